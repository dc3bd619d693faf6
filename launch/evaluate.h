// Evaluation of a classifier over a whole dataset split (no augmentation, no noise).
#pragma once
#include <functional>
#include <optional>

#include "data/augment.h"
#include "data/batch.h"
#include "data/image_dataset.h"
#include "data/image_source.h"
#include "data/preprocess.h"
#include "launch/train_step.h"
#include "parallel/communicator.h"

namespace vmoe {

struct EvalResult {
  double loss = 0;      // mean classification loss
  double accuracy = 0;  // top-1, in [0, 1]
  int64_t examples = 0;
  double moe_gflops_per_image = 0;  // router + experts of all MoE layers, forward
  double dropped_fraction = 0;      // MoE assignments dropped, averaged over layers
};

// Test-time routing: capacity factor and BPR (true: BPR, false: vanilla); unset: the config's
// eval capacity factor and eval BPR.
struct EvalRouting {
  std::optional<double> capacity_factor = std::nullopt;
  std::optional<bool> batch_priority = std::nullopt;
};

// Evaluates the whole dataset (load_split already applies eval.num_examples) in batches of
// `batch_size`. With `world` (all ranks call it), each batch is split over the ranks in whole
// routing groups, so every rank routes exactly what one process would, and the results are
// reduced over the ranks.
EvalResult evaluate(const VisionTransformer& model, const data::ImageDataset& dataset,
                    int64_t batch_size, const data::Normalization& norm, LossKind loss,
                    EvalRouting routing = {}, Communicator* world = nullptr);

// Examples [start, start + count) of an evaluation set as one normalised batch.
using EvalBatchFn = std::function<data::Batch(int64_t start, int64_t count)>;
// The same over any evaluation set of `num_examples` examples.
EvalResult evaluate(const VisionTransformer& model, int64_t num_examples,
                    const EvalBatchFn& batch_of, int64_t batch_size, LossKind loss,
                    EvalRouting routing = {}, Communicator* world = nullptr);

// Evaluation batches of an ImageSource: decoded in parallel and brought to the model's size
// by `preprocess` (evaluation path: resize the shorter side and centre-crop; no randomness).
EvalBatchFn source_eval_batches(const data::ImageSource& source,
                                const data::PreprocessOptions& preprocess);

// A data batch's buffers as tensors on `device`: images [B, H, W, C] f32, labels [B] i32.
Tensor batch_images(const data::Batch& batch, Device device);
Tensor batch_labels(const data::Batch& batch, Device device);

}  // namespace vmoe
