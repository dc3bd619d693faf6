// The two backends made of the CPU kernels: `cpu` (host memory the host reads directly) and
// `cpu_strict`, the test device (core/device.h): the same kernels reached only through this
// table, its own allocator whose fresh blocks are filled with 0xFF (NaN for floats, -1 for
// integers, so code that relies on zeroed memory fails), and every copy to or from the host
// counted.
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "core/cpu/kernels.h"
#include "core/transfer_counts.h"

namespace vmoe {

namespace {

// Entries that take bf16 storage go through cpu::via_f32 (f32 compute, one rounding on store).
Backend cpu_kernels() {
  return Backend{
      .copy = cpu::copy,
      .fill = cpu::fill,
      .binary = cpu::via_f32::binary,
      .unary = cpu::via_f32::unary,
      .unary_backward = cpu::via_f32::unary_backward,
      .add_scaled = cpu::via_f32::add_scaled,
      .scale = cpu::via_f32::scale,
      .sum_squares = cpu::via_f32::sum_squares,
      .reduce_sum = cpu::via_f32::reduce_sum,
      .max_last = cpu::max_last,
      .cumsum = cpu::cumsum,
      .gemm = cpu::via_f32::gemm,
      .gemm_adds_bias = true,
      .softmax = cpu::via_f32::softmax,
      .softmax_backward = cpu::via_f32::softmax_backward,
      .layer_norm = cpu::via_f32::layer_norm,
      .layer_norm_backward = cpu::via_f32::layer_norm_backward,
      .softmax_xent = cpu::softmax_xent,
      .sigmoid_xent = cpu::sigmoid_xent,
      .dropout_mask = cpu::via_f32::dropout_mask,
      .random_fill = cpu::via_f32::random_fill,
      .patches = cpu::via_f32::patches,
      .index_select = cpu::index_select,
      .index_add = cpu::via_f32::index_add,
      .gather = cpu::via_f32::gather,
      .gather_backward = cpu::via_f32::gather_backward,
      .topk = cpu::topk,
      .argsort = cpu::argsort,
      .one_hot = cpu::one_hot,
      .assign_slots = cpu::assign_slots,
      .adamw_update = cpu::adamw_update,
      .sgd_update = cpu::sgd_update,
      .attention_forward = cpu::attention_forward,
      .attention_backward = cpu::attention_backward,
      .bias_gelu = cpu::via_f32::bias_gelu,
      .bias_gelu_backward = cpu::via_f32::bias_gelu_backward,
      .combine = cpu::combine,
      .combine_backward = cpu::combine_backward,
      .expert_mlp = cpu::expert_mlp,
      .expert_mlp_backward = cpu::expert_mlp_backward,
      .importance_loss = cpu::importance_loss,
      .importance_loss_backward = cpu::importance_loss_backward,
      .load_loss = cpu::load_loss,
      .load_loss_backward = cpu::load_loss_backward,
      .supports_dtype = cpu::supports_dtype,
  };
}

// 64-byte aligned (AVX-512 loads).
void* aligned_allocate(size_t bytes) {
  return std::aligned_alloc(64, (bytes + 63) / 64 * 64);
}
void aligned_free(void* p, size_t) {
  std::free(p);
}

void host_copy(const void* src, void* dst, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void no_synchronize() {}

// The strict device's allocator: a cache of its own, and every block it hands out poisoned.
class PoisoningAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = cache_.allocate(bytes);
    std::memset(p, 0xFF, bytes);
    return p;
  }
  void deallocate(void* p, size_t bytes) override { cache_.deallocate(p, bytes); }
  AllocatorStats stats() const override { return cache_.stats(); }
  void reset_peak() override { cache_.reset_peak(); }
  void empty_cache() override { cache_.empty_cache(); }

 private:
  CachingAllocator cache_{{aligned_allocate, aligned_free}};
};

void strict_to_host(const void* src, void* dst, size_t bytes) {
  count_to_host(DeviceType::cpu_strict, int64_t(bytes));
  std::memcpy(dst, src, bytes);
}
void strict_from_host(const void* src, void* dst, size_t bytes) {
  count_from_host(DeviceType::cpu_strict, int64_t(bytes));
  std::memcpy(dst, src, bytes);
}
void strict_synchronize() {
  count_synchronization(DeviceType::cpu_strict);
}

// The CPU kernels with one device's memory functions.
Backend with_memory(const char* name, Allocator* allocator,
                    void (*to_host)(const void*, void*, size_t),
                    void (*from_host)(const void*, void*, size_t), void (*synchronize)()) {
  Backend b = cpu_kernels();
  b.name = name;
  b.allocator = allocator;
  b.copy_to_host = to_host;
  b.copy_from_host = from_host;
  b.synchronize = synchronize;
  return b;
}

}  // namespace

const Backend& cpu_backend() {
  static CachingAllocator allocator({aligned_allocate, aligned_free});
  static const Backend table = with_memory("cpu", &allocator, host_copy, host_copy, no_synchronize);
  return table;
}

const Backend& cpu_strict_backend() {
  static PoisoningAllocator allocator;
  static const Backend table =
      with_memory("cpu_strict", &allocator, strict_to_host, strict_from_host, strict_synchronize);
  return table;
}

}  // namespace vmoe
