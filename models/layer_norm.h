// LayerNorm over the last axis with learned scale (init 1) and bias (init 0).
#pragma once
#include <string>

#include "core/ops.h"
#include "core/parameters.h"

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

 private:
  const ParameterStore* store_;
  ParamId scale_, bias_;
  double eps_;
};

}  // namespace vmoe
