// Which dtypes each CUDA entry handles (Backend::supports_dtype): the CPU's table
// (core/cpu/supports.cpp) with bf16 among the floating types, since every CUDA floating kernel
// stores bf16 and computes in f32 (core/cuda/element_access.h). The optimizer updates keep f32
// or f64 master weights and state (UpdateArgs), never bf16; the MoE combine is f32 and f64.
#include "core/cuda/entries.h"

namespace vmoe::cuda {

bool supports_dtype(Entry entry, DType dtype) {
  const bool floating = dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16;
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
    case Entry::adamw_update:
    case Entry::sgd_update:
    case Entry::combine:  // as the CPU's (mixed precision takes the composed ops)
    case Entry::combine_backward:
      return dtype == DType::f32 || dtype == DType::f64;
    default:
      return floating;
  }
}

}  // namespace vmoe::cuda
