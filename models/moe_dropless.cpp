// Dropless top-k routing (as MegaBlocks' dMoE; configs/vmoe.proto MoeConfig.dropless): the
// paper's router and auxiliary losses, but every (token, choice) pair is computed. The pairs
// are sorted by expert (a stable sort: token order within each expert), each expert runs on
// exactly its rows, and the combine sums the k choices in choice order, so the output equals
// the capacity router's whenever that drops nothing. The per-expert counts are read to the
// host once per layer: they size the experts' GEMMs and the expert-parallel exchange.
#include <algorithm>
#include <optional>
#include <vector>

#include "core/autograd.h"
#include "core/checked_math.h"
#include "core/op_profile.h"
#include "models/moe_layer.h"

namespace vmoe {

FeedForwardOutput MoeLayer::dropless_forward(const Tensor& x, const ForwardContext& ctx,
                                             uint64_t block) const {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), n = b * t;
  const int64_t e = config_.num_experts, k = config_.k;
  const int64_t nk = checked_mul(n, k, "MoE routed pairs (tokens x k)");
  const int64_t group_size =
      checked_mul(config_.images_per_group, t, "MoE group tokens (images x tokens)");
  const Device device = x.device();

  std::optional<ProfileRegion> region(std::in_place, "moe.router");
  Tensor xf = x.reshape({n, d});  // [N, D] in the activation dtype (dispatched as is)
  const RouterProbs r = router_probs(xf, t, ctx, block);
  region.emplace("moe.top_k");
  TopK top = topk(r.p, k);  // values [N, k] (combine weights), indices [N, k]
  region.emplace("moe.slots");
  // The expert loads: one group of all N tokens with capacity N per expert, which nothing
  // can exceed (a token picks an expert at most once).
  SlotLayout whole;
  whole.tokens = n;
  whole.k = k;
  whole.experts = e;
  whole.group_size = std::max<int64_t>(n, 1);
  whole.capacity = whole.last_capacity = whole.rows_per_expert = n;
  const Tensor load = assign_slots(top.indices, Tensor(), whole).expert_load;  // [E] i64
  // The pairs by expert: a stable argsort keeps token order within each expert's segment; its
  // inverse permutation is the sorted row of each (token, choice).
  const Tensor order = argsort(top.indices.reshape({nk}));  // [N k] pair of each sorted row
  const Tensor pair_rows = argsort(order);                  // [N k] sorted row of each pair
  const Tensor token_of_pair = expand(arange(n, DType::i64, device).reshape({n, 1}), {n, k});
  const Tensor sorted_tokens = index_select(token_of_pair.reshape({nk}), order);  // [N k]

  region.emplace("moe.dispatch");
  Tensor sorted = dispatch(xf, sorted_tokens, pair_rows);  // [N k, D]
  // The one host read of the layer (after the dispatch is queued): the counts size the
  // experts' batches and the exchange.
  const std::vector<int64_t> counts = load.cpu().to_vector<int64_t>();
  region.emplace("moe.exchange");
  Tensor expert_out = exchange_->segments(
      sorted, counts, [this](const Tensor& rows, const std::vector<int64_t>& local) {
        ProfileRegion experts_region("moe.experts");
        return experts_.segments(rows, local);
      });  // [N k, D]
  region.emplace("moe.combine");
  // Each token's choices weighted by their routing weights in choice order, as top-k's.
  Tensor out = combine(expert_out, top.values, pair_rows);  // [N, D]

  region.emplace("moe.aux_losses");
  // The auxiliary losses per group of images_per_group images, as top-k's.
  const AuxLosses losses = aux_losses(r, top.indices, group_size);

  if (ctx.moe_reports) {
    region.emplace("moe.report");
    MoeReport report;
    report.block = int64_t(block);
    report.aux_loss = losses.weighted;
    {
      NoGrad no_grad;
      report.expert_load = to_dtype(load, DType::f64);
      // Measured as top-k's (0 unless a pair went missing).
      Tensor dropped = nk > 0 ? sum_all(report.expert_load).reshape({1}) * (-1.0 / double(nk)) + 1.0
                              : Tensor::zeros({1}, DType::f64, device);
      report.stats = report_stats(losses, dropped);
    }
    report.flops = 2.0 * double(n * d * e) + 4.0 * double(nk * d * mlp_dim_);
    if (ctx.record_routing) {
      report.routing = {top.indices, to_dtype(top.values.detach(), DType::f32),
                        Tensor::from_vector(std::vector<uint8_t>(size_t(nk), 1), {n, k}, device)};
    }
    ctx.moe_reports->push_back(std::move(report));
  }
  return {out.reshape({b, t, d}), losses.weighted};
}

// Mirrors dropless_forward() above as top_k_cost() mirrors top_k_forward(): the experts'
// rows are exactly the N k pairs.
LayerCost MoeLayer::dropless_cost(const CostShape& s, int64_t tokens) const {
  const int64_t n = s.batch * tokens, d = dim_, e = config_.num_experts, k = config_.k;
  const int64_t nk = n * k;
  const DType a = s.activation, f = s.param;  // f: the router's island
  const int64_t group_size = config_.images_per_group * tokens_per_image_;
  LayerCost c = router_cost(s, n, true);
  c.keep(n * k, f);  // top-k values (gather)
  const bool fused = a == f && s.fused_combine;
  c.keep(2 * nk, DType::i64);          // top-k indices, sorted row of each pair
  if (!fused) c.keep(nk, DType::i64);  // the sorted rows' tokens, for index_select's backward
  c.keep(nk * d, a);                   // sorted rows
  // The experts on the N k rows. Expert parallel: each owner runs its E / Pe experts on the
  // rows it receives, N k on average (the exact figure depends on the routing); the received
  // input and the returned rows are kept besides the experts' own tensors.
  if (s.exchange == ExchangeKind::expert_parallel) {
    const int64_t pe = s.expert_ranks;
    c += experts_.segments_cost(e / pe, nk, a, f);
    c.keep(2 * nk * d, a);
    c.alltoall_bytes = 2 * nk * d * int64_t(dtype_size(a)) * (pe - 1) / pe;
    c.exchange_buffer_bytes = 2 * nk * d * int64_t(dtype_size(a));
  } else {
    c += experts_.segments_cost(e, nk, a, f);
  }
  c += combine_cost(s, n, k);
  c += aux_losses_cost(s, n, group_size);
  c.active_flops = 2 * n * d * e + 4 * nk * d * mlp_dim_;
  return c;
}

}  // namespace vmoe
