// The mixed-precision policy of the model, in one place (docs/mixed_precision.md).
//
// Precision::bf16: parameters stay in their own dtype (f32 master weights, f32 optimizer
// state); activations between layers are bf16; every matmul meets its weight cast to the
// activation's dtype (a recorded cast, so the gradient returns to the master weight as f32);
// the backends compute bf16 ops in f32 and round once on store. The router (logits, softmax,
// top-k, auxiliary losses), the final LayerNorm, the head and the loss run in the parameter
// dtype (f32). Precision::f32 changes nothing: every cast below is then the identity, so an
// f32 (or f64) model computes bit for bit what it computed before.
#pragma once
#include <cstdint>

#include "core/ops.h"

namespace vmoe {

enum class Precision : uint8_t { f32, bf16 };

inline const char* precision_name(Precision p) {
  return p == Precision::bf16 ? "BF16" : "F32";
}

// The dtype activations flow in between layers of a model whose parameters are `params`.
inline DType activation_dtype(Precision p, DType params) {
  return p == Precision::bf16 ? DType::bf16 : params;
}

// A parameter as the operand of an op on activation `x`: cast to x's dtype (recorded, the
// gradient comes back in the parameter's dtype); the parameter itself when the dtypes agree.
inline Tensor operand_for(const Tensor& param, const Tensor& x) {
  return to_dtype(param, x.dtype());
}

// An activation entering an f32 island (router, final norm and head): cast to the dtype of
// `param`, the island's parameter; x itself when the dtypes agree.
inline Tensor in_dtype_of(const Tensor& x, const Tensor& param) {
  return to_dtype(x, param.dtype());
}

}  // namespace vmoe
