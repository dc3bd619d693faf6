// Evaluation batches in dataset order.
#include "data/eval_batches.h"

#include <algorithm>
#include <string>

#include "data/checked_size.h"
#include "data/data_error.h"

namespace vmoe::data {

int64_t num_eval_batches(const ImageDataset& dataset, int64_t batch_size) {
  if (batch_size <= 0) {
    throw DataError("eval batch_size must be > 0, got " + std::to_string(batch_size));
  }
  return (dataset.n + batch_size - 1) / batch_size;
}

Batch eval_batch(const ImageDataset& dataset, int64_t start, int64_t count,
                 const Normalization& normalization) {
  // Only the cheap buffer checks: a full validate_dataset per batch would scan every label.
  const int64_t example_pixels =
      checked_product({dataset.height, dataset.width, dataset.channels}, "eval_batch: H*W*C");
  if (dataset.images.size() !=
          static_cast<size_t>(checked_mul(dataset.n, example_pixels, "eval_batch: n*H*W*C")) ||
      dataset.labels.size() != static_cast<size_t>(dataset.n)) {
    throw DataError("eval_batch: dataset buffers (" + std::to_string(dataset.images.size()) +
                    " pixels, " + std::to_string(dataset.labels.size()) +
                    " labels) do not match n = " + std::to_string(dataset.n) + " of " +
                    std::to_string(example_pixels) + " pixels");
  }
  if (start < 0 || start >= dataset.n || count <= 0) {
    throw DataError("eval_batch: got start " + std::to_string(start) + ", count " +
                    std::to_string(count) + ", expected start in [0, " + std::to_string(dataset.n) +
                    ") and count > 0");
  }
  validate_normalization(normalization);
  const std::array<float, 256> table = normalization_table(normalization);
  Batch batch;
  batch.batch_size = std::min(count, dataset.n - start);
  batch.height = dataset.height;
  batch.width = dataset.width;
  batch.channels = dataset.channels;
  const int64_t pixels = batch.batch_size * example_pixels;
  batch.images.resize(static_cast<size_t>(pixels));
  const uint8_t* src = dataset.images.data() + start * example_pixels;
  for (int64_t k = 0; k < pixels; ++k) {
    batch.images[static_cast<size_t>(k)] = table[src[k]];
  }
  const auto first = dataset.labels.begin() + start;
  batch.labels.assign(first, first + batch.batch_size);
  batch.indices.resize(static_cast<size_t>(batch.batch_size));
  for (int64_t k = 0; k < batch.batch_size; ++k) {
    batch.indices[static_cast<size_t>(k)] = start + k;
  }
  return batch;
}

}  // namespace vmoe::data
