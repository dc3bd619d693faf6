// Training step implementation.
#include "launch/train_step.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/autograd.h"
#include "core/op_profile.h"
#include "core/ops.h"
#include "core/optim/grad_clip.h"

namespace vmoe {

Tensor classification_loss(const Tensor& logits, const Tensor& labels, LossKind kind) {
  return kind == LossKind::softmax_xent ? softmax_cross_entropy(logits, labels)
                                        : sigmoid_cross_entropy(logits, labels);
}

Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  NoGrad no_grad;
  const Tensor predicted = to_dtype(argmax(logits.detach()), DType::f64);
  return sum_all(equal(predicted, to_dtype(labels, DType::f64)));
}

namespace {

// The figures of a MoE layer before the reduction over ranks: its four statistics, then the
// expert loads [E].
Tensor moe_layer_figures(const MoeReport& m) {
  return concat({m.stats, m.expert_load}, 0);
}

// Sums the ranks' figures, then averages what is a mean per rank (losses, drop fractions)
// and turns the global loads into max / mean. `pre`: [loss, aux, correct, per layer: 4 stats,
// E loads].
Tensor global_figures(Tensor pre, const std::vector<MoeReport>& moe, const Tensor& grad_norm_sq,
                      Communicator* world) {
  double inv = 1.0;
  if (world && world->size() > 1) {
    world->all_reduce(pre);
    inv = 1.0 / double(world->size());
  }
  std::vector<Tensor> parts{pre.slice(0, 0, 2) * inv, sqrt(grad_norm_sq).reshape({1}),
                            pre.slice(0, 2, 3)};
  int64_t at = 3;
  for (const MoeReport& m : moe) {
    const int64_t e = m.expert_load.numel();
    const Tensor loads = pre.slice(0, at + kNumMoeStats, at + kNumMoeStats + e);
    // mean > 0 unless nothing was kept at all; then max is 0 too and the ratio 0.
    const Tensor max_over_mean = max(loads, 0) / (mean_all(loads) + 1e-300);
    parts.push_back(pre.slice(0, at, at + kNumMoeStats) * inv);
    parts.push_back(max_over_mean.reshape({1}));
    at += kNumMoeStats + e;
  }
  return concat(parts, 0);
}

}  // namespace

StepFigures StepResult::read(const Tensor& sums, double steps) const {
  const std::vector<double> v = sums.cpu().to_vector<double>();
  StepFigures f;
  f.loss = v[kLoss] / steps;
  f.aux_loss = v[kAuxLoss] / steps;
  f.grad_norm = v[kGradNorm] / steps;
  f.correct = v[kCorrect];
  for (size_t l = 0; l < moe_blocks.size(); ++l) {
    const double* m = v.data() + kStepFigures + int64_t(l) * kMoeFigures;
    f.moe.push_back({moe_blocks[l], m[kMoeImportanceLoss] / steps, m[kMoeLoadLoss] / steps,
                     m[kMoeGshardLoss] / steps, m[kMoeDroppedFraction] / steps,
                     m[kMoeLoadMaxOverMean] / steps});
  }
  return f;
}

Tensor soft_target_loss(const Tensor& logits, const Tensor& targets, LossKind kind) {
  if (kind != LossKind::softmax_xent) {
    throw std::invalid_argument(
        "mixup (data.mixup_alpha > 0) needs train.loss SOFTMAX_XENT; soft targets with the sigmoid "
        "loss are not supported");
  }
  if (targets.shape() != logits.shape()) {
    throw std::invalid_argument("soft targets " + targets.desc() + " do not match logits " +
                                logits.desc());
  }
  const Tensor t = to_dtype(targets, logits.dtype());
  return sum_all(t * log_softmax(logits)) * (-1.0 / double(logits.size(0)));
}

void check_microbatches(int64_t batch, int64_t microbatches, int64_t images_per_group) {
  const std::string m = "train.microbatches " + std::to_string(microbatches);
  if (microbatches < 1) throw std::invalid_argument(m + ": must be >= 1");
  if (batch % microbatches != 0) {
    throw std::invalid_argument(m + " must divide this rank's batch of " + std::to_string(batch) +
                                " images");
  }
  const int64_t size = batch / microbatches;
  if (images_per_group > 1 && size % images_per_group != 0) {
    throw std::invalid_argument(
        m + " splits this rank's batch of " + std::to_string(batch) +
        " images into micro-batches of " + std::to_string(size) + ", not whole routing groups of " +
        std::to_string(images_per_group) + " images (model.moe.images_per_group)");
  }
}

namespace {

// The micro-batches' summed pre-reduction figures as those of the whole batch: the means
// (losses, MoE statistics) divided by M, the counts (hits, expert loads) kept; on the device.
Tensor microbatch_figures(const Tensor& sums, const std::vector<MoeReport>& moe,
                          int64_t microbatches) {
  const double inv = 1.0 / double(microbatches);
  std::vector<Tensor> parts{sums.slice(0, 0, 2) * inv, sums.slice(0, 2, 3)};
  int64_t at = 3;
  for (const MoeReport& m : moe) {
    const int64_t e = m.expert_load.numel();
    parts.push_back(sums.slice(0, at, at + kNumMoeStats) * inv);
    parts.push_back(sums.slice(0, at + kNumMoeStats, at + kNumMoeStats + e));
    at += kNumMoeStats + e;
  }
  return concat(parts, 0);
}

}  // namespace

StepResult train_step(const VisionTransformer& model, ParameterStore& params, Optimizer& optimizer,
                      const LrSchedule& schedule, const Tensor& images, const Tensor& labels,
                      int64_t step, int64_t first_example, const StepOptions& options,
                      const Tensor& soft_targets) {
  const int64_t m = options.microbatches;
  const int64_t batch = images.dim() > 0 ? images.size(0) : 0;
  check_microbatches(batch, m, model.config().moe ? model.config().moe->images_per_group : 1);
  const int64_t size = batch / m;
  const RngKey key = derive(RngKey{options.seed, 0}, "step", uint64_t(step));
  {
    ProfilePhaseScope phase(ProfilePhase::optimizer);
    ProfileRegion region("zero_grads");
    params.zero_grads();
  }
  GradientReducer* reducer = options.reducer;
  if (reducer) reducer->begin();
  StepResult r;
  Tensor pre;  // the micro-batches' summed figures before the reduction over ranks
  std::vector<MoeReport> moe;
  for (int64_t i = 0; i < m; ++i) {
    // Micro-batch i holds global examples first_example + i * size onwards, so dropout and
    // routing noise (keyed by global example) are those of the whole batch.
    auto part = [&](const Tensor& t) { return m == 1 ? t : t.slice(0, i * size, (i + 1) * size); };
    ForwardContext ctx{Mode::train, key, first_example + i * size};
    ctx.precision = options.precision;
    const Tensor part_labels = part(labels);
    VitOutput out = model(part(images), ctx);
    std::optional<ProfileRegion> region(std::in_place, "loss");
    const Tensor loss = soft_targets.defined()
                            ? soft_target_loss(out.logits, part(soft_targets), options.loss)
                            : classification_loss(out.logits, part_labels, options.loss);
    const Tensor total = out.aux_loss.defined() ? loss + out.aux_loss : loss;
    region.reset();
    // Each micro-batch's mean losses count 1/M of the batch's: the seed scales the gradient.
    const Tensor seed =
        m == 1 ? Tensor()
               : Tensor::full(total.shape(), 1.0 / double(m), total.dtype(), total.device());
    if (reducer && i + 1 == m) {
      // Gradients are final only in the last backward: the reduction starts there, once.
      LeafGradReadyHook hook([reducer](const Tensor& leaf) { reducer->leaf_ready(leaf); });
      total.backward(seed);
    } else {
      total.backward(seed);
    }

    NoGrad no_grad;
    region.emplace("metrics");
    const Device device = loss.device();
    std::vector<Tensor> figures{to_dtype(loss.detach(), DType::f64).reshape({1}),
                                out.aux_loss.defined()
                                    ? to_dtype(out.aux_loss.detach(), DType::f64).reshape({1})
                                    : Tensor::zeros({1}, DType::f64, device),
                                count_correct(out.logits, part_labels).reshape({1})};
    for (const MoeReport& report : out.moe)
      figures.push_back(moe_layer_figures(report));
    Tensor these = concat(figures, 0);
    pre = pre.defined() ? pre + these : these;
    if (i == 0) {
      for (const MoeReport& report : out.moe)
        r.moe_blocks.push_back(report.block);
    }
    moe = std::move(out.moe);
  }
  if (m > 1) {
    NoGrad no_grad;
    pre = microbatch_figures(pre, moe, m);
  }
  Tensor grad_norm_sq;
  {
    ProfilePhaseScope phase(ProfilePhase::optimizer);
    std::optional<ProfileRegion> region(std::in_place, "gradient_reduce");
    if (reducer) {
      reducer->finish();
      grad_norm_sq = reducer->grad_norm_squared();
    } else {
      grad_norm_sq = grad_norm_squared(params);
    }
    r.lr = schedule.at(step);
    region.emplace("optimizer");
    optimizer.step(params, r.lr, {grad_norm_sq, options.grad_clip_norm});
  }

  NoGrad no_grad;
  ProfileRegion region("metrics");
  Communicator* world = reducer ? reducer->groups().world.get() : nullptr;
  r.figures = global_figures(pre, moe, grad_norm_sq, world);
  return r;
}

}  // namespace vmoe
