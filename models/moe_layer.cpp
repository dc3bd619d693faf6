// MoE layer forward: routing, dispatch, experts, combine, auxiliary losses and report.
#include "models/moe_layer.h"

#include <algorithm>
#include <optional>

#include "core/autograd.h"
#include "core/checked_math.h"
#include "core/op_profile.h"
#include "models/moe_losses.h"
#include "models/precision.h"
#include "models/routing.h"

namespace vmoe {

MoeLayer::MoeLayer(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t mlp_dim,
                   int64_t tokens_per_image, MoeConfig config,
                   std::shared_ptr<const ExpertExchange> exchange)
    : store_(&store),
      dim_(dim),
      mlp_dim_(mlp_dim),
      tokens_per_image_(tokens_per_image),
      config_(config),
      router_kernel_(store.declare(prefix + "/router/kernel", {dim, config.num_experts},
                                   InitSpec::lecun_normal(double(dim)), WeightDecay::yes)),
      experts_(store, prefix + "/experts", config.num_experts, dim, mlp_dim,
               config.identical_expert_init ? ExpertInit::identical : ExpertInit::independent),
      exchange_(std::move(exchange)) {}

FeedForwardOutput MoeLayer::operator()(const Tensor& x, const ForwardContext& ctx,
                                       uint64_t block) const {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), n = b * t;
  const int64_t e = config_.num_experts, k = config_.k;
  const bool train = ctx.training();
  const double capacity_factor =
      train ? config_.capacity_factor
            : ctx.eval_capacity_factor.value_or(config_.eval_capacity_factor);
  const bool bpr = train ? config_.batch_priority
                         : ctx.eval_batch_priority.value_or(config_.eval_batch_priority);

  std::optional<ProfileRegion> region(std::in_place, "moe.router");
  Tensor xf = x.reshape({n, d});  // [N, D] in the activation dtype (dispatched as is)
  // The router is an f32 island in mixed precision: logits, softmax, top-k and the auxiliary
  // losses in the router kernel's dtype (models/precision.h).
  const Tensor& router_kernel = (*store_)[router_kernel_];
  Tensor logits = matmul(in_dtype_of(xf, router_kernel), router_kernel);  // [N, E]
  Tensor p_clean = softmax(logits);                                       // [N, E]
  const double sigma = config_.noise_std / double(e);
  const bool noisy = train && sigma > 0;
  Tensor noisy_logits = logits, p = p_clean;
  if (noisy) {
    // Keyed by the global token index, so the noise does not depend on the batch split.
    Tensor noise = randn({n, e}, derive(ctx.key, "router_noise", block),
                         uint64_t(ctx.first_example * t * e), logits.dtype(), x.device());
    noisy_logits = logits + noise * sigma;
    p = softmax(noisy_logits);
  }
  region.emplace("moe.top_k");
  TopK top = topk(p, k);  // values [N, k] (combine weights), indices [N, k]
  region.emplace("moe.slots");
  // Slots are assigned on the device: the token order (BPR: each group's tokens by their
  // largest routing weight, a stable sort), then the k-major fill of every expert's capacity.
  const SlotLayout layout = routing_layout(
      n, k, e, checked_mul(config_.images_per_group, t, "MoE group tokens (images x tokens)"),
      capacity_factor);
  const Tensor order =
      bpr ? priority_order(top.values.detach().slice(1, 0, 1).reshape({n}), layout) : Tensor();
  const SlotAssignment slots = assign_slots(top.indices, order, layout);
  const int64_t rows = layout.rows_per_expert;

  region.emplace("moe.dispatch");
  Tensor dispatched = dispatch(xf, slots.dispatch_rows, slots.combine_rows).reshape({e, rows, d});
  region.emplace("moe.exchange");
  Tensor expert_out = (*exchange_)(dispatched, [this](const Tensor& tokens) {
    ProfileRegion experts_region("moe.experts");
    return experts_(tokens);
  });  // [E, R, D]
  region.emplace("moe.combine");
  // Each token's choices weighted by their routing weights, summed in the router's dtype (f32
  // under bf16 activations), in the activation dtype.
  Tensor out =
      combine(expert_out.reshape({e * rows, d}), top.values, slots.combine_rows);  // [N, D]

  region.emplace("moe.aux_losses");
  // Auxiliary losses, per group then averaged over groups: part of the training objective, so
  // computed whether or not a report sink is attached. All groups at once (moe_losses.h).
  const int64_t groups = layout.groups();
  Tensor importance, load, gshard;
  if (n > 0) {
    importance = grouped_importance_loss(p_clean, layout.group_size);
    if (noisy) {
      Tensor kth = top.indices.slice(1, k - 1, k);  // [N, 1]
      load = grouped_load_loss(logits, noisy_logits, kth, sigma, layout.group_size);
    }
    if (config_.gshard_loss_weight > 0)
      gshard = grouped_gshard_loss(p, top.indices.slice(1, 0, 1).reshape({n}), layout.group_size);
  }
  const double inv_groups = groups > 0 ? 1.0 / double(groups) : 0.0;
  Tensor aux;
  if (importance.defined()) {
    aux = importance * (config_.importance_loss_weight * inv_groups);
    if (load.defined()) aux = aux + load * (config_.load_loss_weight * inv_groups);
    if (gshard.defined()) aux = aux + gshard * (config_.gshard_loss_weight * inv_groups);
  }

  if (ctx.moe_reports) {
    region.emplace("moe.report");
    MoeReport report;
    report.block = int64_t(block);
    report.aux_loss = aux;
    {
      // Statistics for logging, kept on the device (MoeStats::read brings them to the host).
      NoGrad no_grad;
      const Device device = x.device();
      auto stat = [&](const Tensor& v) {
        return v.defined() ? to_dtype(v.detach(), DType::f64).reshape({1}) * inv_groups
                           : Tensor::zeros({1}, DType::f64, device);
      };
      report.expert_load = to_dtype(slots.expert_load, DType::f64);
      Tensor dropped = sum_all(report.expert_load).reshape({1}) * (-1.0 / double(n * k)) + 1.0;
      report.stats = concat({stat(importance), stat(load), stat(gshard), dropped}, 0);
    }
    report.flops = 2.0 * double(n * d * e) + 4.0 * double(e * rows * d * mlp_dim_);
    if (ctx.record_routing) {
      // Tools only (predict, routing maps): read the plan back once.
      const std::vector<int64_t> combine = slots.combine_rows.cpu().to_vector<int64_t>();
      std::vector<uint8_t> kept(combine.size());
      for (size_t i = 0; i < kept.size(); ++i)
        kept[i] = combine[i] >= 0;
      report.routing = {top.indices, to_dtype(top.values.detach(), DType::f32),
                        Tensor::from_vector(kept, {n, k}, x.device())};
    }
    ctx.moe_reports->push_back(std::move(report));
  }
  return {out.reshape({b, t, d}), aux};
}

// Mirrors operator() above; the auxiliary losses' scalars and [E]-sized tensors are counted.
LayerCost MoeLayer::cost(const CostShape& s, int64_t tokens) const {
  const int64_t n = s.batch * tokens, d = dim_, e = config_.num_experts, k = config_.k;
  const DType a = s.activation, f = s.param;  // f: the router's island
  const double capacity_factor =
      s.training ? config_.capacity_factor : config_.eval_capacity_factor;
  const SlotLayout layout =
      routing_layout(n, k, e, config_.images_per_group * tokens_per_image_, capacity_factor);
  const int64_t rows = layout.rows_per_expert;
  const bool noisy = s.training && config_.noise_std > 0;
  LayerCost c;
  if (a != f) c.keep(n * d, f);  // router input in f32
  c.gemm(2 * n * d * e);
  c.keep((noisy ? 5 : 2) * n * e, f);  // logits, p_clean (noisy: noise, noisy logits, p)
  c.keep(n * k, f);                    // top-k values (gather)
  // The fused combine (and the dispatch, whose backward gathers through the combine rows).
  const bool fused = a == f && s.fused_combine;
  c.keep(2 * n * k, DType::i64);             // top-k indices, combine rows
  if (!fused) c.keep(e * rows, DType::i64);  // dispatch rows, for index_select's backward
  c.keep(e * rows * d, a);                   // dispatched
  const int64_t pe = s.expert_ranks;
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
  if (fused) {
    c.keep(n * d, a);  // the fused combine's output: it reads the expert rows in place
  } else {
    c.keep(n * k * d, a);              // picked expert outputs
    if (a != f) c.keep(n * k * d, f);  // ... in f32
    c.keep(n * k * d + n * d, f);      // weighted, summed over the k choices
    if (a != f) c.keep(n * d, a);      // back in the activation dtype
  }
  if (noisy) {
    c.keep(n * (1 + 3 * e), f);  // load loss: thresholds, (l - thr), / sigma, Phi
    c.keep(n, DType::i64);       // the k-th choices
  }
  // The auxiliary losses (moe_losses.h) per batch of groups, the full ones [G, S, E] and the
  // last partial one: importance 3 [G, E] tensors and 9 [G]-sized or scalars (sum over the
  // tokens, cv^2 of each row, sum over the groups), load 4 and 10 (mean, cv^2, sum) besides its
  // scale, GShard 4 and 7 (fractions, mean, product, mean, E^2, sum); the partial batch's [1, E]
  // tensors are small. The two batches added (1 each), then weighted (2 each) and added (1
  // each after the first); the report's 2.
  const bool gshard = config_.gshard_loss_weight > 0;
  const int64_t losses = 1 + (noisy ? 1 : 0) + (gshard ? 1 : 0);
  const int64_t per_batch_rows = 3 + (noisy ? 4 : 0) + (gshard ? 4 : 0);
  const int64_t per_batch_small = 9 + (noisy ? 10 : 0) + (gshard ? 7 : 0);
  const int64_t full = layout.full_groups();
  const bool partial = layout.groups() > full;
  if (full > 0) {
    c.keep(per_batch_rows * full * e, f);
    c.small_tensors += per_batch_small;
  }
  if (partial) c.small_tensors += per_batch_rows + per_batch_small;
  if (full > 0 && partial) c.small_tensors += losses;
  c.small_tensors += (noisy ? 1 : 0) + 3 * losses - 1 + 2;
  // The k-active estimate: every token computed by exactly k experts, no capacity slack.
  c.active_flops = 2 * n * d * e + 4 * n * k * d * mlp_dim_;
  return c;
}

}  // namespace vmoe
