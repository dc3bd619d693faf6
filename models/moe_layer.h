// The V-MoE layer (PAPER.md "Router" and "Auxiliary losses"): noisy top-k router over groups
// of tokens, capacity, k-major slot assignment (vanilla or Batch Prioritized Routing),
// index-based dispatch into an [E, R, D] buffer, stacked experts behind the ExpertExchange,
// combine weighted by the raw softmax probabilities, importance / load / GShard losses.
#pragma once
#include <memory>
#include <string>

#include "models/feed_forward.h"
#include "models/moe_config.h"
#include "models/stacked_experts.h"
#include "parallel/expert_exchange.h"

namespace vmoe {

class MoeLayer final : public FeedForward {
 public:
  // `tokens_per_image` sets the group size (images_per_group * tokens_per_image).
  MoeLayer(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t mlp_dim,
           int64_t tokens_per_image, MoeConfig config,
           std::shared_ptr<const ExpertExchange> exchange = std::make_shared<LocalExchange>());
  // x [B, T, D] -> output [B, T, D] and the weighted auxiliary loss (always); appends a
  // MoeReport (diagnostics) to ctx.moe_reports when set.
  FeedForwardOutput operator()(const Tensor& x, const ForwardContext& ctx,
                               uint64_t block) const override;
  // s.exchange: local, or the expert-parallel exchange over s.expert_ranks ranks.
  LayerCost cost(const CostShape& s, int64_t tokens) const override;
  const MoeConfig& config() const { return config_; }

 private:
  const ParameterStore* store_;
  int64_t dim_, mlp_dim_, tokens_per_image_;
  MoeConfig config_;
  ParamId router_kernel_;  // [D, E], no bias
  StackedExperts experts_;
  std::shared_ptr<const ExpertExchange> exchange_;
};

}  // namespace vmoe
