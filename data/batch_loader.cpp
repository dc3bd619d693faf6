// BatchLoader: walks the epoch order, slices the global batch for this rank, and fills the
// batch through augment_example.
#include "data/batch_loader.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "data/data_error.h"
#include "data/epoch_order.h"

namespace vmoe::data {

BatchLoader::BatchLoader(const ImageDataset& dataset, BatchLoaderOptions options)
    : dataset_(&dataset), options_(options) {
  validate_dataset(dataset, "BatchLoader dataset");
  const auto& o = options_;
  if (o.num_ranks < 1) {
    throw DataError("BatchLoader: num_ranks must be >= 1, got " + std::to_string(o.num_ranks));
  }
  if (o.rank < 0 || o.rank >= o.num_ranks) {
    throw DataError("BatchLoader: rank must be in [0, " + std::to_string(o.num_ranks) + "), got " +
                    std::to_string(o.rank));
  }
  if (o.batch_size <= 0 || o.batch_size % o.num_ranks != 0) {
    throw DataError("BatchLoader: batch_size must be > 0 and a multiple of num_ranks " +
                    std::to_string(o.num_ranks) + ", got " + std::to_string(o.batch_size));
  }
  if (o.drop_last && o.batch_size > dataset.n) {
    throw DataError("BatchLoader: batch_size " + std::to_string(o.batch_size) +
                    " exceeds the dataset's " + std::to_string(dataset.n) +
                    " examples with drop_last, so no batch could be made");
  }
  if (o.crop_padding < 0) {
    throw DataError("BatchLoader: crop_padding must be >= 0, got " +
                    std::to_string(o.crop_padding));
  }
  validate_normalization(o.normalization);
  table_ = normalization_table(o.normalization);
}

int64_t BatchLoader::steps_per_epoch() const {
  const int64_t n = dataset_->n;
  const int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void BatchLoader::set_position(Position position) {
  if (position.epoch < 0 || position.index_in_epoch < 0 || position.index_in_epoch > dataset_->n) {
    throw DataError("BatchLoader::set_position: got epoch " + std::to_string(position.epoch) +
                    ", index_in_epoch " + std::to_string(position.index_in_epoch) +
                    ", expected epoch >= 0 and index_in_epoch in [0, " +
                    std::to_string(dataset_->n) + "]");
  }
  position_ = position;
  roll_over_finished_epoch();
}

void BatchLoader::roll_over_finished_epoch() {
  const int64_t remaining = dataset_->n - position_.index_in_epoch;
  if (remaining == 0 || (options_.drop_last && remaining < options_.batch_size)) {
    position_ = {position_.epoch + 1, 0};
  }
}

const std::vector<int64_t>& BatchLoader::epoch_order() {
  if (order_epoch_ != position_.epoch) {
    if (options_.shuffle) {
      order_ = epoch_permutation(dataset_->n, options_.seed, position_.epoch);
    } else if (order_.empty()) {
      order_.resize(static_cast<size_t>(dataset_->n));
      std::iota(order_.begin(), order_.end(), int64_t{0});
    }
    order_epoch_ = position_.epoch;
  }
  return order_;
}

Batch BatchLoader::next() {
  Batch batch;
  next(batch);
  return batch;
}

void BatchLoader::next(Batch& batch) {
  roll_over_finished_epoch();
  const ImageDataset& d = *dataset_;
  const std::vector<int64_t>& order = epoch_order();
  const int64_t start = position_.index_in_epoch;
  const int64_t global = std::min(options_.batch_size, d.n - start);
  const int64_t ranks = options_.num_ranks;
  const int64_t begin = start + options_.rank * global / ranks;
  const int64_t end = start + (options_.rank + 1) * global / ranks;

  batch.batch_size = end - begin;
  batch.height = d.height;
  batch.width = d.width;
  batch.channels = d.channels;
  const int64_t example_pixels = d.height * d.width * d.channels;
  batch.images.resize(static_cast<size_t>(batch.batch_size * example_pixels));
  batch.labels.resize(static_cast<size_t>(batch.batch_size));
  batch.indices.resize(static_cast<size_t>(batch.batch_size));
  const AugmentOptions augment{options_.random_flip, options_.crop_padding};
  for (int64_t k = 0; k < batch.batch_size; ++k) {
    const int64_t index = order[static_cast<size_t>(begin + k)];
    const AugmentChoice choice = choose_augment(augment, options_.seed, position_.epoch, index);
    augment_example(d.images.data() + index * example_pixels, d.height, d.width, d.channels,
                    options_.crop_padding, choice, table_,
                    batch.images.data() + k * example_pixels);
    batch.labels[static_cast<size_t>(k)] = d.labels[static_cast<size_t>(index)];
    batch.indices[static_cast<size_t>(k)] = index;
  }
  position_.index_in_epoch += global;
  roll_over_finished_epoch();
}

}  // namespace vmoe::data
