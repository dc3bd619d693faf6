// Mixup on a batch: images and one-hot targets of paired examples are mixed with a weight
// lambda ~ Beta(alpha, alpha). Pairs are fixed by the position in the global batch (slots 2j
// and 2j + 1 of the epoch order), and lambda is a pure function of (seed, epoch, pair), so the
// result does not depend on the rank count as long as every rank's slice has an even size.
#pragma once
#include <cstdint>

#include "data/batch.h"

namespace vmoe::data {

// Beta(alpha, alpha) draw for one pair (alpha > 0).
float mixup_lambda(float alpha, uint64_t seed, int64_t epoch, int64_t pair);

// Mixes batch.images in place and fills batch.targets [batch_size, num_classes] from
// batch.labels. `first_slot` is the position in the epoch order of batch example 0; an example
// whose partner slot is outside the batch is left unmixed (one-hot target).
void mixup_batch(Batch& batch, int32_t num_classes, float alpha, uint64_t seed, int64_t epoch,
                 int64_t first_slot);

}  // namespace vmoe::data
