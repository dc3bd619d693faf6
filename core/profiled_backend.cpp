// Timing wrappers over a backend's entries (core/profiled_backend.h).
#include "core/profiled_backend.h"

#include <chrono>

#include "core/op_profile.h"

namespace vmoe {

namespace {

// The wrapped table of the device type with index Slot.
template <int Slot>
const Backend* g_inner = nullptr;

// Entry `Member` of the wrapped table, timed; Name::value() names the kernel.
template <int Slot, auto Member, typename Fn, typename Name>
struct Timed;

template <int Slot, auto Member, typename R, typename... Args, typename Name>
struct Timed<Slot, Member, R (*)(Args...), Name> {
  static R call(Args... args) {
    const Backend& b = *g_inner<Slot>;
    b.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (std::is_void_v<R>) {
      (b.*Member)(args...);
      b.synchronize();
      profile_kernel(Name::value(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } else {
      R r = (b.*Member)(args...);
      b.synchronize();
      profile_kernel(Name::value(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return r;
    }
  }
};

#define VMOE_TIME_ENTRY(entry)                                                     \
  if (inner.entry) {                                                               \
    struct Name {                                                                  \
      static const char* value() { return #entry; }                                \
    };                                                                             \
    t.entry = &Timed<Slot, &Backend::entry, decltype(Backend::entry), Name>::call; \
  }

template <int Slot>
Backend make_timed(const Backend& inner) {
  g_inner<Slot> = &inner;
  Backend t = inner;  // memory functions, synchronize and supports_dtype as they are
  VMOE_TIME_ENTRY(copy_to_host)
  VMOE_TIME_ENTRY(copy_from_host)
  VMOE_TIME_ENTRY(copy)
  VMOE_TIME_ENTRY(fill)
  VMOE_TIME_ENTRY(binary)
  VMOE_TIME_ENTRY(unary)
  VMOE_TIME_ENTRY(unary_backward)
  VMOE_TIME_ENTRY(add_scaled)
  VMOE_TIME_ENTRY(scale)
  VMOE_TIME_ENTRY(sum_squares)
  VMOE_TIME_ENTRY(reduce_sum)
  VMOE_TIME_ENTRY(max_last)
  VMOE_TIME_ENTRY(cumsum)
  VMOE_TIME_ENTRY(gemm)
  VMOE_TIME_ENTRY(softmax)
  VMOE_TIME_ENTRY(softmax_backward)
  VMOE_TIME_ENTRY(layer_norm)
  VMOE_TIME_ENTRY(layer_norm_backward)
  VMOE_TIME_ENTRY(softmax_xent)
  VMOE_TIME_ENTRY(sigmoid_xent)
  VMOE_TIME_ENTRY(dropout_mask)
  VMOE_TIME_ENTRY(random_fill)
  VMOE_TIME_ENTRY(patches)
  VMOE_TIME_ENTRY(index_select)
  VMOE_TIME_ENTRY(index_add)
  VMOE_TIME_ENTRY(gather)
  VMOE_TIME_ENTRY(gather_backward)
  VMOE_TIME_ENTRY(topk)
  VMOE_TIME_ENTRY(argsort)
  VMOE_TIME_ENTRY(one_hot)
  VMOE_TIME_ENTRY(assign_slots)
  VMOE_TIME_ENTRY(adamw_update)
  VMOE_TIME_ENTRY(sgd_update)
  VMOE_TIME_ENTRY(attention_forward)
  VMOE_TIME_ENTRY(attention_backward)
  VMOE_TIME_ENTRY(bias_gelu)
  VMOE_TIME_ENTRY(bias_gelu_backward)
  VMOE_TIME_ENTRY(combine)
  VMOE_TIME_ENTRY(combine_backward)
  VMOE_TIME_ENTRY(expert_mlp)
  VMOE_TIME_ENTRY(expert_mlp_backward)
  VMOE_TIME_ENTRY(importance_loss)
  VMOE_TIME_ENTRY(importance_loss_backward)
  VMOE_TIME_ENTRY(load_loss)
  VMOE_TIME_ENTRY(load_loss_backward)
  return t;
}

#undef VMOE_TIME_ENTRY

}  // namespace

const Backend& profiled_backend(DeviceType type, const Backend& inner) {
  switch (type) {
    case DeviceType::cpu: {
      static const Backend table = make_timed<0>(inner);
      return table;
    }
    case DeviceType::cpu_strict: {
      static const Backend table = make_timed<1>(inner);
      return table;
    }
    case DeviceType::cuda:
      break;
  }
  static const Backend table = make_timed<2>(inner);
  return table;
}

}  // namespace vmoe
