// Evaluation loop.
#include "launch/evaluate.h"

#include <algorithm>

#include "core/autograd.h"
#include "core/kernel_errors.h"
#include "core/ops.h"
#include "data/data_error.h"
#include "data/eval_batches.h"

namespace vmoe {

Tensor batch_images(const data::Batch& batch, Device device) {
  return Tensor::from_vector(batch.images,
                             {batch.batch_size, batch.height, batch.width, batch.channels}, device);
}

Tensor batch_labels(const data::Batch& batch, Device device) {
  return Tensor::from_vector(batch.labels, {batch.batch_size}, device);
}

EvalResult evaluate(const VisionTransformer& model, const data::ImageDataset& dataset,
                    int64_t batch_size, const data::Normalization& norm, LossKind loss,
                    EvalRouting routing, Communicator* world) {
  return evaluate(
      model, dataset.n,
      [&](int64_t start, int64_t count) { return data::eval_batch(dataset, start, count, norm); },
      batch_size, loss, routing, world);
}

EvalBatchFn source_eval_batches(const data::ImageSource& source,
                                const data::PreprocessOptions& preprocess) {
  return [&source, preprocess](int64_t start, int64_t count) {
    data::Batch b;
    data::Image first;
    source.read(start, first);
    b.height = data::preprocess_height(preprocess, first.height);
    b.width = data::preprocess_width(preprocess, first.width);
    b.channels = first.channels;
    b.batch_size = count;
    const size_t per = size_t(b.height * b.width * b.channels);
    b.images.resize(size_t(count) * per);
    b.labels.resize(size_t(count));
    b.indices.resize(size_t(count));
    std::string error;
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < count; ++i) {
      try {
        data::Image img;
        source.read(start + i, img);
        if (img.channels != b.channels ||
            data::preprocess_height(preprocess, img.height) != b.height ||
            data::preprocess_width(preprocess, img.width) != b.width) {
          throw data::DataError(source.describe(start + i) +
                                " does not have the size of the evaluation batch");
        }
        data::preprocess_example(img, preprocess, 0, 0, start + i,
                                 b.images.data() + size_t(i) * per);
      } catch (const std::exception& e) {
#pragma omp critical
        if (error.empty()) error = e.what();
      }
      b.labels[size_t(i)] = source.label(start + i);
      b.indices[size_t(i)] = start + i;
    }
    if (!error.empty()) throw data::DataError("evaluation: " + error);
    return b;
  };
}

EvalResult evaluate(const VisionTransformer& model, int64_t num_examples,
                    const EvalBatchFn& batch_of, int64_t batch_size, LossKind loss,
                    EvalRouting routing, Communicator* world) {
  NoGrad no_grad;
  const int64_t n = num_examples;
  const int64_t ranks = world ? world->size() : 1, rank = world ? world->rank() : 0;
  const bool moe = model.config().moe.has_value();
  // Batches are split over ranks in whole routing groups (whole images for a dense model).
  const int64_t unit = moe ? model.config().moe->images_per_group : 1;
  const Device device = model.device();
  // [loss sum, correct, dropped fraction sum] over the examples, kept on the device and read
  // once at the end.
  Tensor sums = Tensor::zeros({3}, DType::f64, device);
  double examples = 0, flops = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    const int64_t units = (count + unit - 1) / unit;
    const int64_t lo = std::min(count, units * rank / ranks * unit);
    const int64_t hi = std::min(count, units * (rank + 1) / ranks * unit);
    ForwardContext ctx{Mode::eval, {}, start + lo};
    ctx.eval_capacity_factor = routing.capacity_factor;
    ctx.eval_batch_priority = routing.batch_priority;
    if (hi == lo) {
      // Nothing for this rank in a small last batch. An expert-parallel model still takes part
      // in every exchange: one image, routed in its own group, result discarded.
      if (moe && ranks > 1) model(batch_images(batch_of(start, 1), device), ctx);
      continue;
    }
    data::Batch b = batch_of(start + lo, hi - lo);
    const Tensor labels = batch_labels(b, device);
    VitOutput out = model(batch_images(b, device), ctx);
    const double images = double(b.batch_size);
    Tensor dropped = Tensor::zeros({1}, DType::f64, device);
    for (const MoeReport& m : out.moe) {
      flops += m.flops;
      dropped = dropped + m.stats.slice(0, kDroppedFraction, kDroppedFraction + 1) *
                              (images / double(out.moe.size()));
    }
    const Tensor batch_loss = to_dtype(classification_loss(out.logits, labels, loss), DType::f64);
    add_(sums, concat({batch_loss.reshape({1}) * images,
                       count_correct(out.logits, labels).reshape({1}), dropped},
                      0));
    examples += images;
  }
  check_kernel_errors(device);
  std::vector<double> v = sums.cpu().to_vector<double>();
  v.insert(v.end(), {examples, flops});
  if (ranks > 1) {
    Tensor all = Tensor::from_vector(v, {int64_t(v.size())}, kCpu);
    world->all_reduce(all);
    v = all.to_vector<double>();
  }
  EvalResult r;
  r.examples = int64_t(v[3]);
  if (v[3] > 0) {
    r.loss = v[0] / v[3];
    r.accuracy = v[1] / v[3];
    r.moe_gflops_per_image = v[4] / v[3] / 1e9;
    r.dropped_fraction = v[2] / v[3];
  }
  return r;
}

}  // namespace vmoe
