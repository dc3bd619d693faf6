// Training step implementation.
#include "launch/train_step.h"

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

StepResult train_step(const VisionTransformer& model, ParameterStore& params, Optimizer& optimizer,
                      const LrSchedule& schedule, const Tensor& images, const Tensor& labels,
                      int64_t step, int64_t first_example, const StepOptions& options) {
  ForwardContext ctx{Mode::train, derive(RngKey{options.seed, 0}, "step", uint64_t(step)),
                     first_example};
  params.zero_grads();
  VitOutput out = model(images, ctx);
  Tensor loss = classification_loss(out.logits, labels, options.loss);
  StepResult r;
  r.loss = loss.item();
  if (out.aux_loss.defined()) {
    r.aux_loss = out.aux_loss.item();
    loss = loss + out.aux_loss;
  }
  loss.backward();
  for (MoeReport& m : out.moe) {
    m.aux_loss = Tensor();
    r.moe.push_back(std::move(m));
  }
  r.correct = count_correct(out.logits, labels);
  r.grad_norm = clip_grad_norm(params, options.grad_clip_norm);
  r.lr = schedule.at(step);
  optimizer.step(params, r.lr);
  return r;
}

}  // namespace vmoe
