// The V-MoE layer (PAPER.md "Router" and "Auxiliary losses"): noisy top-k router over groups
// of tokens, capacity, k-major slot assignment (vanilla or Batch Prioritized Routing),
// index-based dispatch into an [E, R, D] buffer, stacked experts behind the ExpertExchange,
// combine weighted by the raw softmax probabilities, importance / load / GShard losses. The
// same layer holds the other routers of MoeConfig::router (dropless top-k, Experts Choice,
// Soft MoE): each computes the same experts behind the same exchange.
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
  // x [B, T, D] -> output [B, T, D] and the weighted auxiliary loss (undefined for the routers
  // without one, and for no tokens); appends a MoeReport (diagnostics) to ctx.moe_reports when
  // set.
  FeedForwardOutput operator()(const Tensor& x, const ForwardContext& ctx,
                               uint64_t block) const override;
  // s.exchange: local, or the expert-parallel exchange over s.expert_ranks ranks.
  LayerCost cost(const CostShape& s, int64_t tokens) const override;
  const MoeConfig& config() const { return config_; }

 private:
  // The router's softmax over experts per token, [N, E] each, in the router kernel's dtype:
  // clean and (training with noise) noisy; p is what routes (p_clean without noise).
  struct RouterProbs {
    Tensor logits, noisy_logits, p_clean, p;
    double sigma = 0;  // noise std (noise_std / E)
    bool noisy = false;
  };
  // xf [N, D], the tokens of N / tokens_per_image images (the noise is keyed by global token).
  RouterProbs router_probs(const Tensor& xf, int64_t tokens_per_image, const ForwardContext& ctx,
                           uint64_t block) const;
  // The top-k routers' auxiliary losses over groups of `group_size` tokens (PAPER.md
  // "Auxiliary losses"), each a sum over the groups, and their weighted mean over the groups
  // (`weighted`, undefined for no tokens).
  struct AuxLosses {
    Tensor importance, load, gshard, weighted;
    double inv_groups = 0;
  };
  AuxLosses aux_losses(const RouterProbs& r, const Tensor& choices, int64_t group_size) const;
  // The report's stats [kNumMoeStats] f64 (moe_report.h) from the losses and the dropped
  // fraction [1] f64; no tape.
  static Tensor report_stats(const AuxLosses& losses, const Tensor& dropped);
  // The experts on dispatched rows [E, R, D] through the exchange -> [E, R, D]; `occupied`
  // [E * R] i64 (the dispatch rows, -1 on padding) lets them skip the padding rows.
  Tensor run_experts(const Tensor& dispatched, const Tensor& occupied = Tensor()) const;

  // One file per router (models/moe_<router>.cpp): forward and its cost mirror.
  FeedForwardOutput top_k_forward(const Tensor& x, const ForwardContext& ctx, uint64_t block) const;
  FeedForwardOutput dropless_forward(const Tensor& x, const ForwardContext& ctx,
                                     uint64_t block) const;
  FeedForwardOutput experts_choice_forward(const Tensor& x, const ForwardContext& ctx,
                                           uint64_t block) const;
  FeedForwardOutput soft_forward(const Tensor& x, const ForwardContext& ctx, uint64_t block) const;
  LayerCost top_k_cost(const CostShape& s, int64_t tokens) const;
  LayerCost dropless_cost(const CostShape& s, int64_t tokens) const;
  LayerCost experts_choice_cost(const CostShape& s, int64_t tokens) const;
  LayerCost soft_cost(const CostShape& s, int64_t tokens) const;
  // Parts of the routers' costs. router_probs() on n tokens (`clean_kept`: the clean softmax is
  // kept for a loss even when the noisy one routes); the combine of k weighted choices per
  // token; aux_losses() over n tokens; the experts on [E, rows, D] through the exchange in `s`.
  LayerCost router_cost(const CostShape& s, int64_t n, bool clean_kept) const;
  LayerCost combine_cost(const CostShape& s, int64_t n, int64_t k) const;
  LayerCost aux_losses_cost(const CostShape& s, int64_t n, int64_t group_size) const;
  LayerCost experts_cost(const CostShape& s, int64_t rows) const;

  const ParameterStore* store_;
  int64_t dim_, mlp_dim_, tokens_per_image_;
  MoeConfig config_;
  ParamId router_kernel_ = 0;     // top_k, experts_choice: [D, E], no bias
  ParamId soft_mu_ = 0;           // soft: [D, E, P]
  ParamId soft_scale_ = 0;        // soft: [1]
  int64_t slots_per_expert_ = 0;  // soft: P
  StackedExperts experts_;
  std::shared_ptr<const ExpertExchange> exchange_;
};

}  // namespace vmoe
