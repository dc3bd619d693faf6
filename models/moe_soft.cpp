// Soft MoE (Puigcerver et al. 2023; configs/vmoe.proto MoeConfig.Router SOFT): per image, every
// slot (E experts x P slots) takes a softmax mix over the image's T tokens, each expert runs on
// its P slots of every image, and every token takes a softmax mix over all E * P slot outputs.
// Nothing is dropped and there is no auxiliary loss.
#include <optional>
#include <vector>

#include "core/autograd.h"
#include "core/op_profile.h"
#include "models/moe_layer.h"
#include "models/precision.h"

namespace vmoe {

namespace {

constexpr double kNormEps = 1e-6;  // as the reference's normalisation

// t / sqrt(sum over `axis` of t^2 + 1e-6), the reference's L2 normalisation.
Tensor l2_normalize(const Tensor& t, int64_t axis) {
  return t / sqrt(sum(square(t), {axis}, KeepDim::yes) + kNormEps);
}

// The learned scale multiplies the smaller of the normalised tokens [N, D] and mu [D, S] (as
// the reference; the logits are the same either way): the tokens when N < S.
bool scale_tokens(int64_t tokens, int64_t slots) {
  return tokens < slots;
}

}  // namespace

FeedForwardOutput MoeLayer::soft_forward(const Tensor& x, const ForwardContext& ctx,
                                         uint64_t block) const {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), n = b * t;
  const int64_t e = config_.num_experts, p = slots_per_expert_, s = e * p;
  const Device device = x.device();

  // The router is an f32 island (models/precision.h): normalisation, logits and both softmaxes
  // in mu's dtype; the two mixing matmuls in the activation dtype.
  std::optional<ProfileRegion> region(std::in_place, "moe.router");
  const Tensor& mu = (*store_)[soft_mu_];                              // [D, E, P]
  const Tensor& scale = (*store_)[soft_scale_];                        // [1]
  Tensor x_hat = l2_normalize(in_dtype_of(x, mu).reshape({n, d}), 1);  // [N, D]
  Tensor mu_hat = l2_normalize(mu.reshape({d, s}), 0);                 // [D, S]
  if (scale_tokens(n, s))
    x_hat = x_hat * scale;
  else
    mu_hat = mu_hat * scale;
  Tensor logits = matmul(x_hat, mu_hat);  // [N, S]
  if (ctx.training() && config_.noise_std > 0) {
    // Keyed by the global token index, so the noise does not depend on the batch split.
    Tensor noise = randn({n, s}, derive(ctx.key, "router_noise", block),
                         uint64_t(ctx.first_example * t * s), logits.dtype(), device);
    logits = logits + noise * config_.noise_std;
  }
  logits = logits.reshape({b, t, s});
  // Dispatch: per image and slot, a softmax over the tokens; combine: per token, over slots.
  const Tensor dispatch_w = softmax(transpose(logits, 1, 2));  // [B, S, T]
  const Tensor combine_w = softmax(logits);                    // [B, T, S]

  region.emplace("moe.dispatch");
  Tensor slots_in = matmul(to_dtype(dispatch_w, x.dtype()), x);  // [B, S, D]
  // Expert e gets its P slots of every image: [B, E, P, D] -> [E, B * P, D].
  Tensor dispatched =
      contiguous(permute(slots_in.reshape({b, e, p, d}), {1, 0, 2, 3})).reshape({e, b * p, d});
  region.emplace("moe.exchange");
  Tensor expert_out = run_experts(dispatched);  // [E, B * P, D]
  region.emplace("moe.combine");
  Tensor slots_out =
      contiguous(permute(expert_out.reshape({e, b, p, d}), {1, 0, 2, 3})).reshape({b, s, d});
  Tensor out = matmul(to_dtype(combine_w, x.dtype()), slots_out);  // [B, T, D]

  if (ctx.moe_reports) {
    region.emplace("moe.report");
    NoGrad no_grad;
    MoeReport report;
    report.block = int64_t(block);
    report.stats = Tensor::zeros({kNumMoeStats}, DType::f64, device);  // nothing dropped
    report.expert_load = Tensor::full({e}, double(b * p), DType::f64, device);
    // Router, dispatch and combine mixing, experts.
    report.flops = 3 * 2.0 * double(n * s * d) + 4.0 * double(s * b * d * mlp_dim_);
    if (ctx.record_routing) {
      // Tools only: each token's experts by their total combine weight over the expert's slots;
      // kept = the token is the largest dispatch weight of one of that expert's slots.
      const TopK by_weight = topk(sum(combine_w.reshape({n, e, p}), {2}), e);  // [N, E]
      const std::vector<int64_t> experts = by_weight.indices.cpu().to_vector<int64_t>();
      const std::vector<int64_t> argmax_token = argmax(dispatch_w).cpu().to_vector<int64_t>();
      std::vector<uint8_t> is_argmax(size_t(n * e), 0);  // [N, E]
      for (int64_t slot = 0; slot < b * s; ++slot) {
        const int64_t token = slot / s * t + argmax_token[size_t(slot)];
        is_argmax[size_t(token * e + slot % s / p)] = 1;
      }
      std::vector<uint8_t> kept(size_t(n * e));
      for (size_t i = 0; i < kept.size(); ++i)
        kept[i] = is_argmax[i / size_t(e) * size_t(e) + size_t(experts[i])];
      report.routing = {by_weight.indices, to_dtype(by_weight.values, DType::f32),
                        Tensor::from_vector(kept, {n, e}, device)};
    }
    ctx.moe_reports->push_back(std::move(report));
  }
  return {out, Tensor()};  // no auxiliary loss
}

// Mirrors soft_forward() above: every op's inputs stay on the tape, so each intermediate is
// kept; the [1, S] and [N, 1] norms are counted as tensors, the eps constants as small ones.
LayerCost MoeLayer::soft_cost(const CostShape& s, int64_t tokens) const {
  const int64_t n = s.batch * tokens, d = dim_, e = config_.num_experts;
  const int64_t p = slots_per_expert_, slots = e * p;
  const DType a = s.activation, f = s.param;
  const bool noisy = s.training && config_.noise_std > 0;
  LayerCost c;
  if (a != f) c.keep(n * d, f);                           // router input in f32
  c.keep(2 * n * d + 3 * n, f);                           // x^2, x normalised; sum, + eps, sqrt
  c.keep(2 * d * slots + 3 * slots, f);                   // the same for mu
  c.small_tensors += 2;                                   // the two eps
  c.keep(scale_tokens(n, slots) ? n * d : d * slots, f);  // the scaled one
  c.gemm(2 * n * d * slots);
  c.keep(n * slots, f);                               // logits
  if (noisy) c.keep(2 * n * slots, f);                // scaled noise, noisy logits
  c.keep(2 * n * slots, f);                           // dispatch and combine weights
  if (tokens > 1 && slots > 1) c.keep(n * slots, f);  // the logits transposed (a copy)
  if (a != f) c.keep(2 * n * slots, a);               // both weights in the activation dtype
  c.gemm(2 * n * slots * d);                          // slot inputs
  c.keep(s.batch * slots * d, a);                     // slot inputs
  // The permutes between image and expert order copy unless one image or one expert.
  const bool copies = s.batch > 1 && e > 1;
  if (copies) c.keep(s.batch * slots * d, a);  // arranged by expert
  c += experts_cost(s, s.batch * p);
  if (copies) c.keep(s.batch * slots * d, a);  // slot outputs arranged by image
  c.gemm(2 * n * slots * d);                   // combine
  c.keep(n * d, a);                            // output
  c.small_tensors += 2;                        // the report's stats and load
  return c;
}

}  // namespace vmoe
