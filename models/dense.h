// Dense layer y = x W + b with a kernel [in, out] (JAX/Flax layout) and bias [out].
#pragma once
#include <string>

#include "core/ops.h"
#include "core/parameters.h"
#include "models/layer_cost.h"
#include "models/precision.h"

namespace vmoe {

class Dense {
 public:
  Dense(ParameterStore& store, const std::string& prefix, int64_t in, int64_t out,
        InitSpec kernel_init, InitSpec bias_init)
      : store_(&store),
        kernel_(store.declare(prefix + "/kernel", {in, out}, kernel_init, WeightDecay::yes)),
        bias_(store.declare(prefix + "/bias", {out}, bias_init)) {}

  // x [..., in] -> [..., out], in x's dtype (bf16 x: the f32 weights are cast to bf16).
  Tensor operator()(const Tensor& x) const {
    return linear(x, operand_for(kernel(), x), operand_for(bias(), x));
  }
  // gelu(x W + b), the bias added inside the fused bias + GELU pass (the MLP's first layer).
  Tensor with_gelu(const Tensor& x) const {
    return bias_gelu(linear(x, operand_for(kernel(), x), Tensor()), operand_for(bias(), x));
  }
  // `rows` inputs of dtype x (parameters of dtype `param`): the GEMM, the output and the casts
  // of the weights to x's dtype (with_gelu costs the same; its GELU is the caller's).
  LayerCost cost(int64_t rows, DType x, DType param, InputGrad input = InputGrad::yes) const {
    const Shape& w = store_->infos()[kernel_].shape;  // [in, out]
    LayerCost c;
    c.gemm(2 * rows * w[0] * w[1], input);
    c.keep(rows * w[1], x);
    c.cast(w[0] * w[1] + w[1], param, x);
    return c;
  }
  int64_t out_features() const { return store_->infos()[kernel_].shape[1]; }
  const Tensor& kernel() const { return (*store_)[kernel_]; }
  const Tensor& bias() const { return (*store_)[bias_]; }

 private:
  const ParameterStore* store_;
  ParamId kernel_, bias_;
};

}  // namespace vmoe
