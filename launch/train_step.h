// One optimisation step of a classifier: forward, loss, backward, clipping, update. Shared by
// `vmoe train` and the step benchmark, so both measure the same work. Nothing in a step reads
// device memory back to the host: its figures stay on the model's device as one vector that
// the training loop sums over a logging window and reads once per logged step.
#pragma once
#include <cstdint>

#include "core/optim/optimizer.h"
#include "core/optim/schedule.h"
#include "models/vision_transformer.h"
#include "parallel/gradient_reducer.h"

namespace vmoe {

enum class LossKind : uint8_t { softmax_xent, sigmoid_xent };

// Layout of a step's figure vector: these, then kMoeFigures per MoE layer.
enum StepFigure : int64_t { kLoss = 0, kAuxLoss, kGradNorm, kCorrect, kStepFigures };
enum MoeFigure : int64_t {
  kMoeImportanceLoss = 0,
  kMoeLoadLoss,
  kMoeGshardLoss,
  kMoeDroppedFraction,
  kMoeLoadMaxOverMean,  // max over experts of the (global) kept assignments / their mean
  kMoeFigures
};

// A step's (or a window's summed) figures on the host.
struct MoeFigures {
  int64_t block = 0;
  double importance_loss = 0, load_loss = 0, gshard_loss = 0, dropped_fraction = 0,
         load_max_over_mean = 0;
};
struct StepFigures {
  double loss = 0;       // classification loss (mean over the global batch)
  double aux_loss = 0;   // weighted MoE auxiliary losses (0 for a dense model)
  double grad_norm = 0;  // global gradient norm before clipping
  double correct = 0;    // top-1 hits in the global batch
  std::vector<MoeFigures> moe;
};

struct StepResult {
  // [kStepFigures + kMoeFigures * moe_blocks.size()] f64 on the model's device: the global
  // figures of this step (averaged or summed over ranks as fits each).
  Tensor figures;
  std::vector<int64_t> moe_blocks;  // encoder block of each MoE layer
  double lr = 0;

  // Reads `figures` (or a sum of several steps' figures divided by `steps`) to the host: one
  // host read.
  StepFigures read(const Tensor& figures, double steps = 1) const;
  StepFigures read() const { return read(figures); }
};

struct StepOptions {
  LossKind loss = LossKind::softmax_xent;
  double grad_clip_norm = 0;  // 0 = off
  uint64_t seed = 0;
  // Data-parallel runs: reduces gradients during backward; the step's figures are then
  // reduced over all ranks too (loss and aux losses averaged, hits and expert loads summed).
  GradientReducer* reducer = nullptr;
  // Mixed precision (models/precision.h): bf16 activations, f32 master weights and optimizer.
  Precision precision = Precision::f32;
  // Gradient accumulation (train.microbatches): the batch runs as this many sequential
  // micro-batches, each scaled so that the summed gradients and figures are those of the whole
  // batch (to float rounding); the reducer reduces once, during the last backward.
  int64_t microbatches = 1;
};

// Checks that `microbatches` splits a rank's `batch` images into micro-batches of whole
// routing groups of `images_per_group` images (0 or 1 for a dense model); throws
// std::invalid_argument naming train.microbatches otherwise.
void check_microbatches(int64_t batch, int64_t microbatches, int64_t images_per_group);

// images [B, H, W, C] f32, labels [B] i32 (on the model's device): this rank's slice of the
// global batch, starting at global example `first_example`; `step` is the 0-based update
// number. `soft_targets` [B, num_classes] (mixup) replace the one-hot labels in the loss when
// given; hits are still counted against `labels`.
StepResult train_step(const VisionTransformer& model, ParameterStore& params, Optimizer& optimizer,
                      const LrSchedule& schedule, const Tensor& images, const Tensor& labels,
                      int64_t step, int64_t first_example, const StepOptions& options,
                      const Tensor& soft_targets = Tensor());

// Loss for a batch of logits [B, C] and labels [B].
Tensor classification_loss(const Tensor& logits, const Tensor& labels, LossKind kind);
// Softmax cross-entropy against soft targets [B, C] (rows summing to 1), mean over the batch.
Tensor soft_target_loss(const Tensor& logits, const Tensor& targets, LossKind kind);
// [] f64 on the logits' device: the number of rows whose argmax equals the label.
Tensor count_correct(const Tensor& logits, const Tensor& labels);

}  // namespace vmoe
