// The token-wise sub-layer of an encoder block: the dense MLP here; the MoE layer implements
// the same interface.
#pragma once
#include "core/tensor.h"
#include "models/forward_context.h"

namespace vmoe {

class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // x [B, T, D] -> [B, T, D]
  virtual Tensor operator()(const Tensor& x, const ForwardContext& ctx, uint64_t stream) const = 0;
};

}  // namespace vmoe
