// Training step implementation.
#include "launch/train_step.h"

#include <cmath>
#include <stdexcept>

#include "core/autograd.h"
#include "core/optim/grad_clip.h"

namespace vmoe {

Tensor classification_loss(const Tensor& logits, const Tensor& labels, LossKind kind) {
  return kind == LossKind::softmax_xent ? softmax_cross_entropy(logits, labels)
                                        : sigmoid_cross_entropy(logits, labels);
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor pred = argmax(logits.detach());
  const int64_t* p = pred.data<int64_t>();
  Tensor l = labels.contiguous();
  const int32_t* y = l.data<int32_t>();
  int64_t hits = 0;
  for (int64_t i = 0; i < pred.numel(); ++i)
    hits += p[i] == y[i];
  return hits;
}

namespace {

// Averages / sums a step's figures over all ranks with one all-reduce.
void reduce_over_ranks(StepResult& r, Communicator& world) {
  std::vector<double> v{r.loss, r.aux_loss, double(r.correct)};
  for (const MoeReport& m : r.moe) {
    v.insert(v.end(), {m.importance_loss, m.load_loss, m.gshard_loss, m.dropped_fraction});
    for (int64_t l : m.expert_load)
      v.push_back(double(l));
  }
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  world.all_reduce(t);
  v = t.to_vector<double>();
  const double inv = 1.0 / double(world.size());
  size_t i = 0;
  r.loss = v[i++] * inv;
  r.aux_loss = v[i++] * inv;
  r.correct = int64_t(std::llround(v[i++]));
  for (MoeReport& m : r.moe) {
    m.importance_loss = v[i++] * inv;
    m.load_loss = v[i++] * inv;
    m.gshard_loss = v[i++] * inv;
    m.dropped_fraction = v[i++] * inv;
    for (int64_t& l : m.expert_load)
      l = int64_t(std::llround(v[i++]));
  }
}

}  // namespace

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

StepResult train_step(const VisionTransformer& model, ParameterStore& params, Optimizer& optimizer,
                      const LrSchedule& schedule, const Tensor& images, const Tensor& labels,
                      int64_t step, int64_t first_example, const StepOptions& options,
                      const Tensor& soft_targets) {
  ForwardContext ctx{Mode::train, derive(RngKey{options.seed, 0}, "step", uint64_t(step)),
                     first_example};
  params.zero_grads();
  VitOutput out = model(images, ctx);
  Tensor loss = soft_targets.defined() ? soft_target_loss(out.logits, soft_targets, options.loss)
                                       : classification_loss(out.logits, labels, options.loss);
  StepResult r;
  r.loss = loss.item();
  if (out.aux_loss.defined()) {
    r.aux_loss = out.aux_loss.item();
    loss = loss + out.aux_loss;
  }
  if (GradientReducer* reducer = options.reducer) {
    reducer->begin();
    {
      LeafGradReadyHook hook([reducer](const Tensor& leaf) { reducer->leaf_ready(leaf); });
      loss.backward();
    }
    reducer->finish();
    r.grad_norm = reducer->global_grad_norm();
  } else {
    loss.backward();
    r.grad_norm = global_grad_norm(params);
  }
  for (MoeReport& m : out.moe) {
    m.aux_loss = Tensor();
    r.moe.push_back(std::move(m));
  }
  r.correct = count_correct(out.logits, labels);
  clip_grads_to_norm(params, r.grad_norm, options.grad_clip_norm);
  r.lr = schedule.at(step);
  optimizer.step(params, r.lr);
  if (options.reducer && options.reducer->groups().world_size() > 1)
    reduce_over_ranks(r, *options.reducer->groups().world);
  return r;
}

}  // namespace vmoe
