// MoE layer: parameters, the router's softmax shared by the token routers, the experts behind
// the exchange, and the choice of router (one file each: models/moe_<router>.cpp).
#include "models/moe_layer.h"

#include "core/autograd.h"
#include "core/op_profile.h"
#include "models/moe_losses.h"
#include "models/precision.h"

namespace vmoe {

MoeLayer::MoeLayer(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t mlp_dim,
                   int64_t tokens_per_image, MoeConfig config,
                   std::shared_ptr<const ExpertExchange> exchange)
    : store_(&store),
      dim_(dim),
      mlp_dim_(mlp_dim),
      tokens_per_image_(tokens_per_image),
      config_(config),
      // Declared before the experts, so the store's order is router then experts.
      router_kernel_(config.router == MoeRouter::soft
                         ? 0
                         : store.declare(prefix + "/router/kernel", {dim, config.num_experts},
                                         InitSpec::lecun_normal(double(dim)), WeightDecay::yes)),
      slots_per_expert_(
          config.router == MoeRouter::soft ? soft_slots_per_expert(config, tokens_per_image) : 0),
      experts_(store, prefix + "/experts", config.num_experts, dim, mlp_dim,
               config.identical_expert_init ? ExpertInit::identical : ExpertInit::independent),
      exchange_(std::move(exchange)) {
  if (config.router == MoeRouter::soft) {
    // As the reference: mu ~ lecun_normal over D (normalised in forward), scale = 1.
    soft_mu_ = store.declare(prefix + "/router/mu", {dim, config.num_experts, slots_per_expert_},
                             InitSpec::lecun_normal(double(dim)), WeightDecay::yes);
    soft_scale_ = store.declare(prefix + "/router/scale", {1}, InitSpec::constant(1.0));
  }
}

FeedForwardOutput MoeLayer::operator()(const Tensor& x, const ForwardContext& ctx,
                                       uint64_t block) const {
  switch (config_.router) {
    case MoeRouter::experts_choice:
      return experts_choice_forward(x, ctx, block);
    case MoeRouter::soft:
      return soft_forward(x, ctx, block);
    case MoeRouter::top_k:
      break;
  }
  return config_.dropless ? dropless_forward(x, ctx, block) : top_k_forward(x, ctx, block);
}

LayerCost MoeLayer::cost(const CostShape& s, int64_t tokens) const {
  switch (config_.router) {
    case MoeRouter::experts_choice:
      return experts_choice_cost(s, tokens);
    case MoeRouter::soft:
      return soft_cost(s, tokens);
    case MoeRouter::top_k:
      break;
  }
  return config_.dropless ? dropless_cost(s, tokens) : top_k_cost(s, tokens);
}

MoeLayer::RouterProbs MoeLayer::router_probs(const Tensor& xf, int64_t tokens_per_image,
                                             const ForwardContext& ctx, uint64_t block) const {
  const int64_t n = xf.size(0), e = config_.num_experts;
  // The router is an f32 island in mixed precision: logits, softmax, top-k and the auxiliary
  // losses in the router kernel's dtype (models/precision.h).
  const Tensor& router_kernel = (*store_)[router_kernel_];
  RouterProbs r;
  r.logits = matmul(in_dtype_of(xf, router_kernel), router_kernel);  // [N, E]
  r.p_clean = softmax(r.logits);                                     // [N, E]
  r.sigma = config_.noise_std / double(e);
  r.noisy = ctx.training() && r.sigma > 0;
  r.noisy_logits = r.logits;
  r.p = r.p_clean;
  if (r.noisy) {
    // Keyed by the global token index, so the noise does not depend on the batch split.
    const int64_t t = tokens_per_image;
    Tensor noise = randn({n, e}, derive(ctx.key, "router_noise", block),
                         uint64_t(ctx.first_example * t * e), r.logits.dtype(), xf.device());
    r.noisy_logits = r.logits + noise * r.sigma;
    r.p = softmax(r.noisy_logits);
  }
  return r;
}

MoeLayer::AuxLosses MoeLayer::aux_losses(const RouterProbs& r, const Tensor& choices,
                                         int64_t group_size) const {
  // Per group then averaged over groups: part of the training objective, so computed whether
  // or not a report sink is attached. All groups at once (moe_losses.h).
  const int64_t n = choices.size(0), k = choices.size(1);
  AuxLosses out;
  if (n == 0) return out;
  out.inv_groups = 1.0 / double((n + group_size - 1) / group_size);
  out.importance = grouped_importance_loss(r.p_clean, group_size);
  if (r.noisy) {
    const Tensor kth = choices.slice(1, k - 1, k);  // [N, 1]
    out.load = grouped_load_loss(r.logits, r.noisy_logits, kth, r.sigma, group_size);
  }
  if (config_.gshard_loss_weight > 0)
    out.gshard = grouped_gshard_loss(r.p, choices.slice(1, 0, 1).reshape({n}), group_size);
  out.weighted = out.importance * (config_.importance_loss_weight * out.inv_groups);
  if (out.load.defined())
    out.weighted = out.weighted + out.load * (config_.load_loss_weight * out.inv_groups);
  if (out.gshard.defined())
    out.weighted = out.weighted + out.gshard * (config_.gshard_loss_weight * out.inv_groups);
  return out;
}

Tensor MoeLayer::report_stats(const AuxLosses& losses, const Tensor& dropped) {
  NoGrad no_grad;
  auto stat = [&](const Tensor& v) {
    return v.defined() ? to_dtype(v.detach(), DType::f64).reshape({1}) * losses.inv_groups
                       : Tensor::zeros({1}, DType::f64, dropped.device());
  };
  return concat({stat(losses.importance), stat(losses.load), stat(losses.gshard), dropped}, 0);
}

Tensor MoeLayer::run_experts(const Tensor& dispatched, const Tensor& occupied) const {
  return (*exchange_)(dispatched, occupied, [this](const Tensor& tokens, const Tensor& rows) {
    ProfileRegion experts_region("moe.experts");
    return experts_(tokens, rows);
  });  // [E, R, D]
}

LayerCost MoeLayer::router_cost(const CostShape& s, int64_t n, bool clean_kept) const {
  const int64_t d = dim_, e = config_.num_experts;
  const DType f = s.param;  // the router's island
  const bool noisy = s.training && config_.noise_std > 0;
  LayerCost c;
  if (s.activation != f) c.keep(n * d, f);  // router input in f32
  c.gemm(2 * n * d * e);
  // Logits and the softmax; with noise, the noise and noisy logits, and the clean softmax if
  // a loss keeps it.
  c.keep((noisy ? (clean_kept ? 5 : 4) : 2) * n * e, f);
  return c;
}

LayerCost MoeLayer::combine_cost(const CostShape& s, int64_t n, int64_t k) const {
  const int64_t d = dim_;
  const DType a = s.activation, f = s.param;
  LayerCost c;
  if (a == f && s.fused_combine) {
    c.keep(n * d, a);  // the fused combine's output: it reads the expert rows in place
  } else {
    c.keep(n * k * d, a);              // picked expert outputs
    if (a != f) c.keep(n * k * d, f);  // ... in f32
    c.keep(n * k * d + n * d, f);      // weighted, summed over the k choices
    if (a != f) c.keep(n * d, a);      // back in the activation dtype
  }
  return c;
}

// Mirrors aux_losses() and report_stats(); the scalars and [E]-sized tensors are counted.
LayerCost MoeLayer::aux_losses_cost(const CostShape& s, int64_t n, int64_t group_size) const {
  const int64_t e = config_.num_experts;
  const DType f = s.param;
  const bool noisy = s.training && config_.noise_std > 0;
  LayerCost c;
  if (noisy) c.keep(n, DType::i64);  // the k-th choices
  const bool gshard = config_.gshard_loss_weight > 0;
  const int64_t losses = 1 + (noisy ? 1 : 0) + (gshard ? 1 : 0);
  const int64_t full = n / group_size;
  const bool partial = n % group_size != 0;
  // The fused importance and load losses (core/ops_aux_losses.cpp) keep each group's [E] row of
  // statistics and their loss (the logits they read are kept by the router's ops already); the
  // last partial group's row counted as a small tensor, as the composed losses' partial batch.
  const bool fused = s.fused_aux_losses && (f == DType::f32 || f == DType::f64);
  if (fused) {
    const int64_t fused_losses = noisy ? 2 : 1;
    c.keep(fused_losses * full * e, f);
    c.small_tensors += fused_losses * (partial ? 2 : 1);
  } else if (noisy) {
    c.keep(n * (1 + 3 * e), f);  // load loss: thresholds, (l - thr), / sigma, Phi
  }
  // The composed auxiliary losses (moe_losses.h) per batch of groups, the full ones [G, S, E]
  // and the last partial one: importance 3 [G, E] tensors and 9 [G]-sized or scalars (sum over
  // the tokens, cv^2 of each row, sum over the groups), load 4 and 10 (mean, cv^2, sum) besides
  // its scale, GShard 4 and 7 (fractions, mean, product, mean, E^2, sum); the partial batch's
  // [1, E] tensors are small. The two batches added (1 each).
  const int64_t composed = (fused ? 0 : 1 + (noisy ? 1 : 0)) + (gshard ? 1 : 0);
  const int64_t per_batch_rows = (fused ? 0 : 3 + (noisy ? 4 : 0)) + (gshard ? 4 : 0);
  const int64_t per_batch_small = (fused ? 0 : 9 + (noisy ? 10 : 0)) + (gshard ? 7 : 0);
  if (full > 0 && composed > 0) {
    c.keep(per_batch_rows * full * e, f);
    c.small_tensors += per_batch_small;
  }
  if (partial) c.small_tensors += per_batch_rows + per_batch_small;
  if (full > 0 && partial) c.small_tensors += composed;
  // The losses weighted (2 each) and added (1 each after the first); the report's 2.
  c.small_tensors += (noisy && !fused ? 1 : 0) + 3 * losses - 1 + 2;
  return c;
}

LayerCost MoeLayer::experts_cost(const CostShape& s, int64_t rows) const {
  const int64_t e = config_.num_experts, d = dim_, pe = s.expert_ranks;
  const DType a = s.activation, f = s.param;
  LayerCost c;
  if (s.exchange == ExchangeKind::expert_parallel) {
    // Each owner runs its E / Pe experts on every rank's rows; the received input and the
    // returned [E, R, D] are kept besides the experts' own tensors.
    c += experts_.cost(e / pe, pe * rows, a, f);
    c.keep(2 * e * rows * d, a);
    c.alltoall_bytes = 2 * e * rows * d * int64_t(dtype_size(a)) * (pe - 1) / pe;
    c.exchange_buffer_bytes = 2 * e * rows * d * int64_t(dtype_size(a));
  } else {
    c += experts_.cost(e, rows, a, f);
  }
  return c;
}

}  // namespace vmoe
