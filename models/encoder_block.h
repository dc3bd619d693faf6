// Pre-LN encoder block: x = x + Attn(LN1(x)); x = x + F(LN2(x)), F the MLP or MoE layer.
#pragma once
#include <memory>
#include <string>

#include "models/attention.h"
#include "models/feed_forward.h"
#include "models/layer_norm.h"

namespace vmoe {

class EncoderBlock {
 public:
  EncoderBlock(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t heads,
               double eps, double dropout_rate, double attention_dropout_rate,
               std::unique_ptr<FeedForward> feed_forward);
  // x [B, T, D] -> [B, T, D] and the feed-forward layer's auxiliary loss; `index` is the block
  // number (keys its randomness).
  FeedForwardOutput operator()(const Tensor& x, const ForwardContext& ctx, uint64_t index) const;
  const FeedForward& feed_forward() const { return *feed_forward_; }
  // What operator() costs on [s.batch, tokens, D] (models/layer_cost.h).
  LayerCost cost(const CostShape& s, int64_t tokens) const;

 private:
  double dropout_rate_;
  LayerNorm ln1_;
  MultiHeadAttention attn_;
  LayerNorm ln2_;
  std::unique_ptr<FeedForward> feed_forward_;
};

}  // namespace vmoe
