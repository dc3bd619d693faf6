// Training batches from an ImageSource, decoded and augmented by worker threads into a bounded
// prefetch queue: a shuffle per epoch from the seed, a contiguous slice of every global batch per
// data-parallel rank, and a Position counting the global examples served in the epoch (saved in
// checkpoints). Everything random is a pure function of (seed, epoch, example), so 1 rank and
// N ranks see the same global batches and a run resumed with set_position() continues the
// exact stream. Batches are built whole by one worker each and handed
// out in order, so the stream is the same for any thread count. A corrupt example (read()
// throws DataError) is replaced by the next readable example of the epoch order, which depends
// only on the data, and reported once.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "data/batch.h"
#include "data/image_source.h"
#include "data/preprocess.h"

namespace vmoe::data {

// Bounds on the loader's resources: more threads or queued batches than this is a mistake.
inline constexpr int kMaxLoaderThreads = 1024;  // configs: kMaxThreads
inline constexpr int kMaxPrefetchBatches = 1024;

struct ThreadedLoaderOptions {
  int64_t batch_size = 128;  // global batch over all ranks; a multiple of num_ranks
  bool shuffle = true;       // false: every epoch visits 0..n-1 in order
  uint64_t seed = 0;
  bool drop_last = true;  // false: the last global batch of an epoch may be partial
  int rank = 0;           // this rank's slice of each global batch
  int num_ranks = 1;
  int num_threads = 2;       // worker threads decoding and augmenting, <= kMaxLoaderThreads
  int prefetch_batches = 4;  // batches built ahead of the consumer (queue depth), bounded too
  PreprocessOptions preprocess;
  float mixup_alpha = 0;  // > 0: mix pairs of examples, Batch::targets holds the soft targets
  // Called from next() once per corrupt example this rank met, with "describe(i): error".
  std::function<void(const std::string&)> on_corrupt;
};

class ThreadedLoader {
 public:
  // Where the stream stands: `index_in_epoch` examples of epoch `epoch`'s order have been
  // served (counted over the global batch, so it does not depend on the rank count).
  struct Position {
    int64_t epoch = 0;
    int64_t index_in_epoch = 0;
    bool operator==(const Position&) const = default;
  };

  // Keeps a reference to `source`, which must outlive the loader. Throws DataError on invalid
  // options. Workers start on the first next().
  ThreadedLoader(const ImageSource& source, ThreadedLoaderOptions options);
  // Stops and joins the workers; never waits for the queue to drain.
  ~ThreadedLoader();
  ThreadedLoader(const ThreadedLoader&) = delete;
  ThreadedLoader& operator=(const ThreadedLoader&) = delete;

  // This rank's part of the next global batch; moves to the next epoch after the last one.
  // A full global batch gives every rank batch_size / num_ranks examples; a partial last batch
  // (drop_last false) of g examples gives rank r examples [r*g/P, (r+1)*g/P). Rethrows an
  // error a worker met while building this batch (other than a corrupt example).
  Batch next();
  void next(Batch& out);

  int64_t steps_per_epoch() const;
  // The position after the last batch next() returned.
  Position position() const { return position_; }
  // Resumes at `position` (from position() of any loader with the same data and batch size).
  void set_position(Position position);
  // Corrupt examples reported so far, "describe(i): error" each, in the order met.
  const std::vector<std::string>& corrupt_reports() const { return reports_; }
  const ThreadedLoaderOptions& options() const { return options_; }

 private:
  struct Plan {
    int64_t seq = 0;
    int64_t epoch = 0;
    int64_t start = 0;   // first slot of the global batch in the epoch order
    int64_t global = 0;  // global batch size
    Position after;
    std::shared_ptr<const std::vector<int64_t>> order;
  };
  struct Built {
    Batch batch;
    Position after;
    std::exception_ptr error;
    std::vector<std::pair<int64_t, std::string>> corrupt;  // (example, message)
  };

  Position rolled_over(Position p) const;
  Plan make_plan();  // under mutex_
  void build(const Plan& plan, Built& out);
  // Index of the first readable example at or after `slot` of the epoch order; reads it.
  int64_t read_valid(const std::vector<int64_t>& order, int64_t slot, Image& image, Built& out);
  void worker();
  void start_workers();
  void stop_workers();

  const ImageSource* source_;
  ThreadedLoaderOptions options_;
  Position position_;

  std::mutex mutex_;
  std::condition_variable space_;  // a worker may plan another batch, or stop_
  std::condition_variable ready_;  // a batch was finished
  bool stop_ = false;
  bool started_ = false;
  Position plan_position_;
  int64_t next_plan_seq_ = 0;
  int64_t next_consume_seq_ = 0;
  std::map<int64_t, Built> done_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;
  std::map<int64_t, std::string> known_corrupt_;  // example -> message; shared by workers
  std::vector<std::thread> workers_;

  std::set<int64_t> reported_;  // consumer side
  std::vector<std::string> reports_;
};

}  // namespace vmoe::data
