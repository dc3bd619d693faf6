// Evaluation loop.
#include "launch/evaluate.h"

#include <algorithm>

#include "core/autograd.h"
#include "data/eval_batches.h"

namespace vmoe {

Tensor batch_images(const data::Batch& batch) {
  return Tensor::from_vector(batch.images,
                             {batch.batch_size, batch.height, batch.width, batch.channels});
}

Tensor batch_labels(const data::Batch& batch) {
  return Tensor::from_vector(batch.labels, {batch.batch_size});
}

EvalResult evaluate(const VisionTransformer& model, const data::ImageDataset& dataset,
                    int64_t batch_size, const data::Normalization& norm, LossKind loss,
                    EvalRouting routing) {
  NoGrad no_grad;
  const int64_t n = dataset.n;
  EvalResult r;
  double loss_sum = 0;
  int64_t correct = 0;
  double flops = 0, dropped = 0;
  int64_t moe_batches = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    data::Batch b = data::eval_batch(dataset, start, std::min(batch_size, n - start), norm);
    Tensor labels = batch_labels(b);
    ForwardContext ctx{Mode::eval, {}, start};
    ctx.eval_capacity_factor = routing.capacity_factor;
    ctx.eval_batch_priority = routing.batch_priority;
    VitOutput out = model(batch_images(b), ctx);
    for (const MoeReport& m : out.moe) {
      flops += m.flops;
      dropped += m.dropped_fraction / double(out.moe.size());
    }
    moe_batches += out.moe.empty() ? 0 : 1;
    loss_sum += classification_loss(out.logits, labels, loss).item() * double(b.batch_size);
    correct += count_correct(out.logits, labels);
    r.examples += b.batch_size;
  }
  r.loss = r.examples ? loss_sum / double(r.examples) : 0;
  r.accuracy = r.examples ? double(correct) / double(r.examples) : 0;
  r.moe_gflops_per_image = r.examples ? flops / double(r.examples) / 1e9 : 0;
  r.dropped_fraction = moe_batches ? dropped / double(moe_batches) : 0;
  return r;
}

}  // namespace vmoe
