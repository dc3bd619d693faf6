// Device dispatch and the entry checks shared by every backend.
#include "core/backend.h"

#include <stdexcept>
#include <string>

#include "core/op_profile.h"
#include "core/profiled_backend.h"
#include "vmoe_build_features.h"  // VMOE_WITH_CUDA
#if VMOE_WITH_CUDA
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_context.h"
#endif

namespace vmoe {

namespace {

bool has_entry(const Backend& b, Entry entry);

// Every entry not marked optional in backend.h must be present: checked once per table.
const Backend& checked_table(const Backend& b) {
  if (!b.allocator || !b.copy_to_host || !b.copy_from_host || !b.synchronize)
    throw std::logic_error(std::string("backend ") + b.name + " lacks its memory functions");
  for (int e = 0; e <= int(Entry::load_loss_backward); ++e) {
    const Entry entry = Entry(e);
    if (!is_optional(entry) && !has_entry(b, entry))
      throw std::logic_error(std::string("backend ") + b.name + " lacks the required entry " +
                             entry_name(entry));
  }
  return b;
}

}  // namespace

namespace {

const Backend& plain_backend_for(Device device);

}  // namespace

const Backend& backend_for(Device device) {
  const Backend& table = plain_backend_for(device);
  return op_profile_active() ? profiled_backend(device.type, table) : table;
}

namespace {

const Backend& plain_backend_for(Device device) {
  switch (device.type) {
    case DeviceType::cpu: {
      static const Backend& table = checked_table(cpu_backend());
      return table;
    }
    case DeviceType::cpu_strict: {
      static const Backend& table = checked_table(cpu_strict_backend());
      return table;
    }
    case DeviceType::cuda: {
#if VMOE_WITH_CUDA
      // One table serves the process's CUDA device; use_device selects it on first use, makes
      // it this thread's, and throws "cuda:0 is not available: ..." without a GPU.
      cuda::use_device(device.index);
      static const Backend& table = checked_table(cuda::cuda_backend());
      return table;
#else
      break;
#endif
    }
  }
  throw std::runtime_error("no backend for device " + device.str() +
                           " in this build (configure with -DVMOE_CUDA=ON)");
}

}  // namespace

bool is_optional(Entry entry) {
  return entry == Entry::assign_slots || entry == Entry::adamw_update ||
         entry == Entry::sgd_update || entry == Entry::attention_forward ||
         entry == Entry::attention_backward || entry == Entry::bias_gelu ||
         entry == Entry::bias_gelu_backward || entry == Entry::combine ||
         entry == Entry::combine_backward || entry == Entry::expert_mlp ||
         entry == Entry::expert_mlp_backward || entry == Entry::importance_loss ||
         entry == Entry::importance_loss_backward || entry == Entry::load_loss ||
         entry == Entry::load_loss_backward;
}

const char* entry_name(Entry entry) {
  static const char* const names[] = {"copy",
                                      "fill",
                                      "binary",
                                      "unary",
                                      "unary_backward",
                                      "add_scaled",
                                      "scale",
                                      "sum_squares",
                                      "reduce_sum",
                                      "max_last",
                                      "gemm",
                                      "softmax",
                                      "softmax_backward",
                                      "layer_norm",
                                      "layer_norm_backward",
                                      "softmax_xent",
                                      "sigmoid_xent",
                                      "dropout_mask",
                                      "random_fill",
                                      "patches",
                                      "index_select",
                                      "index_add",
                                      "gather",
                                      "gather_backward",
                                      "topk",
                                      "argsort",
                                      "cumsum",
                                      "one_hot",
                                      "assign_slots",
                                      "adamw_update",
                                      "sgd_update",
                                      "attention_forward",
                                      "attention_backward",
                                      "bias_gelu",
                                      "bias_gelu_backward",
                                      "combine",
                                      "combine_backward",
                                      "expert_mlp",
                                      "expert_mlp_backward",
                                      "importance_loss",
                                      "importance_loss_backward",
                                      "load_loss",
                                      "load_loss_backward"};
  return names[int(entry)];
}

void require_entry(const Backend& backend, Entry entry, DType dtype) {
  if (!backend_supports(backend, entry, dtype)) {
    throw std::invalid_argument(std::string("the ") + backend.name + " backend has no " +
                                entry_name(entry) + " kernel for " + dtype_name(dtype));
  }
}

namespace {

bool has_entry(const Backend& b, Entry entry) {
  switch (entry) {
    case Entry::copy:
      return b.copy;
    case Entry::fill:
      return b.fill;
    case Entry::binary:
      return b.binary;
    case Entry::unary:
      return b.unary;
    case Entry::unary_backward:
      return b.unary_backward;
    case Entry::add_scaled:
      return b.add_scaled;
    case Entry::scale:
      return b.scale;
    case Entry::sum_squares:
      return b.sum_squares;
    case Entry::reduce_sum:
      return b.reduce_sum;
    case Entry::max_last:
      return b.max_last;
    case Entry::gemm:
      return b.gemm;
    case Entry::softmax:
      return b.softmax;
    case Entry::softmax_backward:
      return b.softmax_backward;
    case Entry::layer_norm:
      return b.layer_norm;
    case Entry::layer_norm_backward:
      return b.layer_norm_backward;
    case Entry::softmax_xent:
      return b.softmax_xent;
    case Entry::sigmoid_xent:
      return b.sigmoid_xent;
    case Entry::dropout_mask:
      return b.dropout_mask;
    case Entry::random_fill:
      return b.random_fill;
    case Entry::patches:
      return b.patches;
    case Entry::index_select:
      return b.index_select;
    case Entry::index_add:
      return b.index_add;
    case Entry::gather:
      return b.gather;
    case Entry::gather_backward:
      return b.gather_backward;
    case Entry::topk:
      return b.topk;
    case Entry::argsort:
      return b.argsort;
    case Entry::cumsum:
      return b.cumsum;
    case Entry::one_hot:
      return b.one_hot;
    case Entry::assign_slots:
      return b.assign_slots;
    case Entry::adamw_update:
      return b.adamw_update;
    case Entry::sgd_update:
      return b.sgd_update;
    case Entry::attention_forward:
      return b.attention_forward;
    case Entry::attention_backward:
      return b.attention_backward;
    case Entry::bias_gelu:
      return b.bias_gelu;
    case Entry::bias_gelu_backward:
      return b.bias_gelu_backward;
    case Entry::combine:
      return b.combine;
    case Entry::combine_backward:
      return b.combine_backward;
    case Entry::expert_mlp:
      return b.expert_mlp;
    case Entry::expert_mlp_backward:
      return b.expert_mlp_backward;
    case Entry::importance_loss:
      return b.importance_loss;
    case Entry::importance_loss_backward:
      return b.importance_loss_backward;
    case Entry::load_loss:
      return b.load_loss;
    case Entry::load_loss_backward:
      return b.load_loss_backward;
  }
  return false;
}

}  // namespace

bool backend_supports(const Backend& backend, Entry entry, DType dtype) {
  return has_entry(backend, entry) &&
         (backend.supports_dtype == nullptr || backend.supports_dtype(entry, dtype));
}

}  // namespace vmoe
