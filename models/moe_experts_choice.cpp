// Experts Choice routing (Zhou et al. 2022; configs/vmoe.proto MoeConfig.Router): per group,
// each expert takes the C tokens with the largest routing weight p[:, e]. It runs on the top-k
// slot machinery: every (token n, expert e) pair becomes an item n E + e that chooses expert e
// alone (k = 1) with priority p[n, e]; Batch Prioritized Routing's stable sort of a group's
// items then fills each expert's C slots with its C best tokens (ties: lower token first), and
// the slot plan [N, E] is the combine plan of k = E choices weighted by p.
#include <algorithm>
#include <optional>

#include "core/autograd.h"
#include "core/checked_math.h"
#include "core/op_profile.h"
#include "models/moe_layer.h"
#include "models/precision.h"

namespace vmoe {

namespace {

// Items n E + e of N tokens and E experts, as [N * E, 1] i64 on `device`: the token of each
// item (`token_of`) or its expert (`expert_of`); shapes only, built on the device.
Tensor item_table(int64_t n, int64_t e, bool token_of, Device device) {
  const Tensor column = token_of ? arange(n, DType::i64, device).reshape({n, 1})
                                 : arange(e, DType::i64, device).reshape({1, e});
  return contiguous(expand(column, {n, e})).reshape({n * e, 1});
}

// Slots per expert of a group of `tokens`: the capacity rule of top-k with k = 1, at most the
// group (an expert cannot take a token twice).
int64_t experts_choice_capacity(int64_t tokens, double capacity_factor, int64_t experts) {
  return std::min(tokens, expert_capacity(tokens, 1, capacity_factor, experts));
}

// The layout of items: groups of S * E items (S tokens), each expert C slots per group.
SlotLayout item_layout(int64_t n, int64_t e, int64_t group_size, double capacity_factor) {
  SlotLayout L;
  L.tokens = checked_mul(n, e, "Experts Choice items (tokens x experts)");
  L.k = 1;
  L.experts = e;
  L.group_size = checked_mul(group_size, e, "Experts Choice group items");
  const int64_t full = n / group_size, last = n - full * group_size;
  L.capacity = experts_choice_capacity(group_size, capacity_factor, e);
  L.last_capacity = last > 0 ? experts_choice_capacity(last, capacity_factor, e) : L.capacity;
  L.rows_per_expert = full * L.capacity + (last > 0 ? L.last_capacity : 0);
  return L;
}

}  // namespace

FeedForwardOutput MoeLayer::experts_choice_forward(const Tensor& x, const ForwardContext& ctx,
                                                   uint64_t block) const {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), n = b * t;
  const int64_t e = config_.num_experts;
  const double capacity_factor =
      ctx.training() ? config_.capacity_factor
                     : ctx.eval_capacity_factor.value_or(config_.eval_capacity_factor);
  std::optional<ProfileRegion> region(std::in_place, "moe.router");
  Tensor xf = x.reshape({n, d});  // [N, D]
  const RouterProbs r = router_probs(xf, t, ctx, block);
  const Tensor& p = r.p;  // [N, E]: selection priorities and combine weights

  region.emplace("moe.slots");
  const int64_t group = checked_mul(config_.images_per_group, t, "MoE group tokens");
  const SlotLayout layout = item_layout(n, e, group, capacity_factor);
  const int64_t rows = layout.rows_per_expert;
  const Device device = x.device();
  const Tensor order = priority_order(p.detach().reshape({n * e}), layout);
  const SlotAssignment slots = assign_slots(item_table(n, e, false, device), order, layout);
  // Every slot is filled (C <= S): the item of each buffer row is never -1, so its token is a
  // plain row lookup.
  const Tensor dispatch_tokens =
      index_select(item_table(n, e, true, device), slots.dispatch_rows).reshape({e * rows});

  region.emplace("moe.dispatch");
  Tensor dispatched = dispatch(xf, dispatch_tokens, slots.combine_rows).reshape({e, rows, d});
  region.emplace("moe.exchange");
  Tensor expert_out = run_experts(dispatched);  // [E, R, D]
  region.emplace("moe.combine");
  // Token n's output: sum over the experts that took it, in expert order, of p[n, e] times the
  // expert's output (rows -1 where expert e did not take n).
  Tensor out = combine(expert_out.reshape({e * rows, d}), p, slots.combine_rows);  // [N, D]

  if (ctx.moe_reports) {
    region.emplace("moe.report");
    NoGrad no_grad;
    MoeReport report;
    report.block = int64_t(block);
    report.expert_load = to_dtype(slots.expert_load, DType::f64);
    // "Dropped": the fraction of tokens that no expert took.
    Tensor taken = index_add(n, dispatch_tokens,
                             Tensor::full({e * rows, 1}, 1.0, DType::f64,
                                          device));  // [N, 1]
    Tensor untaken = equal(taken, Tensor::zeros({1, 1}, DType::f64, device));
    Tensor zero = Tensor::zeros({1}, DType::f64, device);
    report.stats = concat({zero, zero, zero, sum_all(untaken).reshape({1}) * (1.0 / double(n))}, 0);
    report.flops = 2.0 * double(n * d * e) + 4.0 * double(e * rows * d * mlp_dim_);
    if (ctx.record_routing) {
      // Tools only: every expert per token by descending weight, kept = that expert took it.
      const TopK all = topk(p, e);
      const std::vector<int64_t> experts = all.indices.cpu().to_vector<int64_t>();
      const std::vector<int64_t> combine_rows = slots.combine_rows.cpu().to_vector<int64_t>();
      std::vector<uint8_t> kept(experts.size());
      for (size_t i = 0; i < kept.size(); ++i) {
        const size_t token = i / size_t(e);
        kept[i] = combine_rows[token * size_t(e) + size_t(experts[i])] >= 0;
      }
      report.routing = {all.indices, to_dtype(all.values, DType::f32),
                        Tensor::from_vector(kept, {n, e}, device)};
    }
    ctx.moe_reports->push_back(std::move(report));
  }
  return {out.reshape({b, t, d}), Tensor()};
}

// Mirrors experts_choice_forward() above.
LayerCost MoeLayer::experts_choice_cost(const CostShape& s, int64_t tokens) const {
  const int64_t n = s.batch * tokens, d = dim_, e = config_.num_experts;
  const DType a = s.activation, f = s.param;
  const double capacity_factor =
      s.training ? config_.capacity_factor : config_.eval_capacity_factor;
  const SlotLayout layout =
      item_layout(n, e, config_.images_per_group * tokens_per_image_, capacity_factor);
  const int64_t rows = layout.rows_per_expert;
  // As top-k's router, less the clean softmax when the noisy one routes (nothing keeps it).
  LayerCost c = router_cost(s, n, false);
  const bool fused = a == f && s.fused_combine;
  c.keep(n * e, DType::i64);                 // combine rows (the dispatch's backward too)
  if (!fused) c.keep(e * rows, DType::i64);  // tokens of the rows, for index_select's backward
  c.keep(e * rows * d, a);                   // dispatched
  c += experts_cost(s, rows);
  c += combine_cost(s, n, e);
  c.small_tensors += 2;  // the report's stats and load
  c.active_flops = 2 * n * d * e + 4 * e * rows * d * mlp_dim_;
  return c;
}

}  // namespace vmoe
