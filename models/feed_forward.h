// The token-wise sub-layer of an encoder block: the dense MLP here; the MoE layer implements
// the same interface.
#pragma once
#include "core/tensor.h"
#include "models/forward_context.h"
#include "models/layer_cost.h"

namespace vmoe {

// What a token-wise sub-layer returns: its output and its contribution to the training
// objective, whether or not a report sink is attached.
struct [[nodiscard]] FeedForwardOutput {
  Tensor out;       // [B, T, D]
  Tensor aux_loss;  // scalar weighted auxiliary loss (MoE load balancing); undefined if none
};

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // x [B, T, D] -> output [B, T, D] and auxiliary loss.
  virtual FeedForwardOutput operator()(const Tensor& x, const ForwardContext& ctx,
                                       uint64_t stream) const = 0;
  // What operator() costs on [s.batch, tokens, D] (models/layer_cost.h).
  virtual LayerCost cost(const CostShape& s, int64_t tokens) const = 0;
};

}  // namespace vmoe
