// Which dtypes each CPU kernel handles (Backend::supports_dtype). The op layer rejects the
// rest with its own errors; this table is what the backend op tests consult to report a
// missing combination as skipped.
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

bool supports_dtype(Entry entry, DType dtype) {
  const bool floating = dtype == DType::f32 || dtype == DType::f64;
  const bool numeric = floating || dtype == DType::i32 || dtype == DType::i64;
  switch (entry) {
    case Entry::copy:
    case Entry::fill:
    case Entry::index_select:  // moves whole rows as bytes
      return true;
    case Entry::argsort:
    case Entry::cumsum:
      return numeric;
    case Entry::assign_slots:
      return dtype == DType::i64;
    // bf16 storage, f32 compute (core/cpu/bf16_storage.cpp): what mixed precision needs.
    case Entry::binary:
    case Entry::unary:
    case Entry::unary_backward:
    case Entry::add_scaled:
    case Entry::scale:
    case Entry::sum_squares:
    case Entry::reduce_sum:
    case Entry::gemm:
    case Entry::softmax:
    case Entry::softmax_backward:
    case Entry::layer_norm:
    case Entry::layer_norm_backward:
    case Entry::dropout_mask:
    case Entry::random_fill:
    case Entry::patches:
    case Entry::index_add:
    case Entry::gather:
    case Entry::gather_backward:
    case Entry::bias_gelu:
    case Entry::bias_gelu_backward:
      return floating || dtype == DType::bf16;
    case Entry::attention_forward:  // f32 and f64 only (attention.cpp)
    case Entry::attention_backward:
      return floating;
    default:
      return floating;
  }
}

}  // namespace vmoe::cpu
