// The paper's router (PAPER.md "Router", "Auxiliary losses"): noisy top-k over each token's
// experts, capacity per group, vanilla or Batch Prioritized slot order, fused dispatch and
// combine, importance / load / GShard losses.
#include <algorithm>
#include <optional>

#include "core/autograd.h"
#include "core/checked_math.h"
#include "core/op_profile.h"
#include "models/moe_layer.h"
#include "models/precision.h"
#include "models/routing.h"

namespace vmoe {

FeedForwardOutput MoeLayer::top_k_forward(const Tensor& x, const ForwardContext& ctx,
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
  const RouterProbs r = router_probs(xf, t, ctx, block);
  region.emplace("moe.top_k");
  TopK top = topk(r.p, k);  // values [N, k] (combine weights), indices [N, k]
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
  // Only the rows that hold a token are computed (padding rows come back 0).
  Tensor expert_out = run_experts(dispatched, slots.dispatch_rows);  // [E, R, D]
  region.emplace("moe.combine");
  // Each token's choices weighted by their routing weights, summed in the router's dtype (f32
  // under bf16 activations), in the activation dtype.
  Tensor out =
      combine(expert_out.reshape({e * rows, d}), top.values, slots.combine_rows);  // [N, D]

  region.emplace("moe.aux_losses");
  const AuxLosses losses = aux_losses(r, top.indices, layout.group_size);
  const Tensor& aux = losses.weighted;

  if (ctx.moe_reports) {
    region.emplace("moe.report");
    MoeReport report;
    report.block = int64_t(block);
    report.aux_loss = aux;
    {
      // Statistics for logging, kept on the device (MoeStats::read brings them to the host).
      NoGrad no_grad;
      report.expert_load = to_dtype(slots.expert_load, DType::f64);
      Tensor dropped = sum_all(report.expert_load).reshape({1}) * (-1.0 / double(n * k)) + 1.0;
      report.stats = report_stats(losses, dropped);
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

// Mirrors top_k_forward() above.
LayerCost MoeLayer::top_k_cost(const CostShape& s, int64_t tokens) const {
  const int64_t n = s.batch * tokens, d = dim_, e = config_.num_experts, k = config_.k;
  const DType a = s.activation, f = s.param;  // f: the router's island
  const double capacity_factor =
      s.training ? config_.capacity_factor : config_.eval_capacity_factor;
  const SlotLayout layout =
      routing_layout(n, k, e, config_.images_per_group * tokens_per_image_, capacity_factor);
  const int64_t rows = layout.rows_per_expert;
  LayerCost c = router_cost(s, n, true);
  c.keep(n * k, f);  // top-k values (gather)
  // The fused combine (and the dispatch, whose backward gathers through the combine rows).
  const bool fused = a == f && s.fused_combine;
  c.keep(2 * n * k, DType::i64);             // top-k indices, combine rows
  if (!fused) c.keep(e * rows, DType::i64);  // dispatch rows, for index_select's backward
  c.keep(e * rows * d, a);                   // dispatched
  c += experts_cost(s, rows);
  c += combine_cost(s, n, k);
  c += aux_losses_cost(s, n, layout.group_size);
  // The k-active estimate: every token computed by exactly k experts, no capacity slack.
  c.active_flops = 2 * n * d * e + 4 * n * k * d * mlp_dim_;
  return c;
}

}  // namespace vmoe
