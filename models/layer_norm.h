// LayerNorm over the last axis with learned scale (init 1) and bias (init 0).
#pragma once
#include <string>

#include "core/ops.h"
#include "core/parameters.h"
#include "models/layer_cost.h"

namespace vmoe {

class LayerNorm {
 public:
  LayerNorm(ParameterStore& store, const std::string& prefix, int64_t dim, double eps)
      : store_(&store),
        scale_(store.declare(prefix + "/scale", {dim}, InitSpec::constant(1.0))),
        bias_(store.declare(prefix + "/bias", {dim}, InitSpec::zeros())),
        eps_(eps) {}

  // x [..., dim]
  Tensor operator()(const Tensor& x) const {
    return layer_norm(x, (*store_)[scale_], (*store_)[bias_], eps_);
  }
  // `rows` rows of dtype x: the output and the rows' mean and 1/std (no GEMM).
  LayerCost cost(int64_t rows, DType x) const {
    LayerCost c;
    c.keep(rows * dim(), x);
    c.keep(2 * rows, norm_stats_dtype(x));
    return c;
  }
  int64_t dim() const { return store_->infos()[scale_].shape[0]; }

 private:
  const ParameterStore* store_;
  ParamId scale_, bias_;
  double eps_;
};

}  // namespace vmoe
