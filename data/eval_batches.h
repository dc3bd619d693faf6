// Evaluation batches: the dataset in order, no augmentation, the last batch partial.
#pragma once
#include <cstdint>

#include "data/augment.h"
#include "data/batch.h"
#include "data/image_dataset.h"

namespace vmoe::data {

// Number of batches of `batch_size` needed to cover the dataset (the last may be partial).
int64_t num_eval_batches(const ImageDataset& dataset, int64_t batch_size);

// Examples [start, min(start + count, n)) of `dataset`, normalised, not augmented. Loop with
// start = 0, B, 2B, ... while start < n.
Batch eval_batch(const ImageDataset& dataset, int64_t start, int64_t count,
                 const Normalization& normalization = {});

}  // namespace vmoe::data
