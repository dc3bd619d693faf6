// Deterministic in-memory training batches: per-epoch shuffle, augmentation, normalisation and
// a contiguous slice of every global batch per data-parallel rank. Everything random is a pure
// function of (seed, epoch, example), so 1 rank and N ranks see the same global batches and a
// run resumed with set_position() continues the exact stream.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/augment.h"
#include "data/batch.h"
#include "data/image_dataset.h"

namespace vmoe::data {

struct BatchLoaderOptions {
  int64_t batch_size = 128;  // global batch over all ranks; a multiple of num_ranks
  bool shuffle = true;       // false: every epoch visits 0..n-1 in order
  uint64_t seed = 0;
  bool drop_last = true;     // false: the last global batch of an epoch may be partial
  bool random_flip = false;  // horizontal mirror with probability 1/2
  int64_t crop_padding = 0;  // zero-pad by p on each side, random crop back to H x W; 0 = off
  Normalization normalization;
  int rank = 0;  // this rank's slice of each global batch
  int num_ranks = 1;
};

class BatchLoader {
 public:
  // Where the stream stands: `index_in_epoch` examples of epoch `epoch`'s order have been
  // served (counted over the global batch, so it does not depend on the rank count).
  struct Position {
    int64_t epoch = 0;
    int64_t index_in_epoch = 0;
    bool operator==(const Position&) const = default;
  };

  // Keeps a reference to `dataset`, which must outlive the loader. Throws DataError on invalid
  // options or dataset.
  BatchLoader(const ImageDataset& dataset, BatchLoaderOptions options);

  // This rank's part of the next global batch; moves to the next epoch after the last one.
  // A full global batch gives every rank batch_size / num_ranks examples; a partial last batch
  // (drop_last false) of g examples gives rank r examples [r*g/P, (r+1)*g/P).
  Batch next();
  // The same, refilling `out` so its buffers are reused from step to step.
  void next(Batch& out);

  int64_t steps_per_epoch() const;
  Position position() const { return position_; }
  // Resumes at `position` (as returned by position(), possibly from another loader).
  void set_position(Position position);
  const BatchLoaderOptions& options() const { return options_; }

 private:
  // Moves to the start of the next epoch once no (full, if drop_last) batch is left.
  void roll_over_finished_epoch();
  const std::vector<int64_t>& epoch_order();

  const ImageDataset* dataset_;
  BatchLoaderOptions options_;
  std::array<float, 256> table_;  // [256] normalised value of each pixel value
  Position position_;
  std::vector<int64_t> order_;  // [n] visiting order of epoch order_epoch_
  int64_t order_epoch_ = -1;
};

}  // namespace vmoe::data
