// MLP block Dense(M) -> GELU (tanh) -> Dense(D), with optional dropout after each Dense.
#pragma once
#include <string>

#include "models/dense.h"
#include "models/feed_forward.h"

namespace vmoe {

class MlpBlock final : public FeedForward {
 public:
  MlpBlock(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t mlp_dim,
           double dropout_rate);
  // x [B, T, D] -> [B, T, D]; no auxiliary loss.
  FeedForwardOutput operator()(const Tensor& x, const ForwardContext& ctx,
                               uint64_t stream) const override;
  LayerCost cost(const CostShape& s, int64_t tokens) const override;

 private:
  double dropout_rate_;
  Dense fc1_, fc2_;
};

}  // namespace vmoe
