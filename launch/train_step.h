// One optimisation step of a classifier: forward, loss, backward, clipping, update.
// Shared by `vmoe train` and the step benchmark, so both measure the same work.
#pragma once
#include <cstdint>

#include "core/optim/optimizer.h"
#include "core/optim/schedule.h"
#include "models/vision_transformer.h"
#include "parallel/gradient_reducer.h"

namespace vmoe {

enum class LossKind : uint8_t { softmax_xent, sigmoid_xent };

struct StepResult {
  double loss = 0;       // classification loss (mean over the batch)
  double aux_loss = 0;   // weighted MoE auxiliary losses (0 for a dense model)
  double grad_norm = 0;  // global gradient norm before clipping
  double lr = 0;
  int64_t correct = 0;         // top-1 hits in this (global) batch
  std::vector<MoeReport> moe;  // per MoE layer (tensors dropped)
};

struct StepOptions {
  LossKind loss = LossKind::softmax_xent;
  double grad_clip_norm = 0;  // 0 = off
  uint64_t seed = 0;
  // Data-parallel runs: reduces gradients during backward; the step's figures are then
  // reduced over all ranks too (loss and aux losses averaged, hits and expert loads summed).
  GradientReducer* reducer = nullptr;
};

// images [B, H, W, C] f32, labels [B] i32: this rank's slice of the global batch, starting at
// global example `first_example`; `step` is the 0-based update number.
// `soft_targets` [B, num_classes] (mixup) replace the one-hot labels in the loss when given;
// hits are still counted against `labels`.
StepResult train_step(const VisionTransformer& model, ParameterStore& params, Optimizer& optimizer,
                      const LrSchedule& schedule, const Tensor& images, const Tensor& labels,
                      int64_t step, int64_t first_example, const StepOptions& options,
                      const Tensor& soft_targets = Tensor());

// Loss for a batch of logits [B, C] and labels [B].
Tensor classification_loss(const Tensor& logits, const Tensor& labels, LossKind kind);
// Softmax cross-entropy against soft targets [B, C] (rows summing to 1), mean over the batch.
Tensor soft_target_loss(const Tensor& logits, const Tensor& targets, LossKind kind);
// Number of rows whose argmax equals the label.
int64_t count_correct(const Tensor& logits, const Tensor& labels);

}  // namespace vmoe
