// ThreadedLoader: a planner (under the mutex) hands out global batches in order; workers build
// their rank's slice; the consumer takes finished batches by sequence number.
#include "data/threaded_loader.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "data/checked_size.h"
#include "data/data_error.h"
#include "data/epoch_order.h"
#include "data/mixup.h"

namespace vmoe::data {

ThreadedLoader::ThreadedLoader(const ImageSource& source, ThreadedLoaderOptions options)
    : source_(&source), options_(std::move(options)) {
  const auto& o = options_;
  const int64_t n = source.size();
  if (n <= 0) throw DataError("ThreadedLoader: the source has no examples");
  if (o.num_ranks < 1) {
    throw DataError("ThreadedLoader: num_ranks must be >= 1, got " + std::to_string(o.num_ranks));
  }
  if (o.rank < 0 || o.rank >= o.num_ranks) {
    throw DataError("ThreadedLoader: rank must be in [0, " + std::to_string(o.num_ranks) +
                    "), got " + std::to_string(o.rank));
  }
  if (o.batch_size <= 0 || o.batch_size % o.num_ranks != 0) {
    throw DataError("ThreadedLoader: batch_size must be > 0 and a multiple of num_ranks " +
                    std::to_string(o.num_ranks) + ", got " + std::to_string(o.batch_size));
  }
  if (o.drop_last && o.batch_size > n) {
    throw DataError("ThreadedLoader: batch_size " + std::to_string(o.batch_size) +
                    " exceeds the source's " + std::to_string(n) +
                    " examples with drop_last, so no batch could be made");
  }
  if (o.num_threads < 1 || o.num_threads > kMaxLoaderThreads) {
    throw DataError("ThreadedLoader: num_threads must be in [1, " +
                    std::to_string(kMaxLoaderThreads) + "], got " + std::to_string(o.num_threads));
  }
  if (o.prefetch_batches < 1 || o.prefetch_batches > kMaxPrefetchBatches) {
    throw DataError("ThreadedLoader: prefetch_batches must be in [1, " +
                    std::to_string(kMaxPrefetchBatches) + "], got " +
                    std::to_string(o.prefetch_batches));
  }
  if (!(o.mixup_alpha >= 0)) {
    throw DataError("ThreadedLoader: mixup_alpha must be >= 0, got " +
                    std::to_string(o.mixup_alpha));
  }
  validate_preprocess(o.preprocess);
  position_ = rolled_over({0, 0});
}

ThreadedLoader::~ThreadedLoader() {
  stop_workers();
}

int64_t ThreadedLoader::steps_per_epoch() const {
  const int64_t n = source_->size();
  const int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : n / b + (n % b != 0 ? 1 : 0);  // no n + b - 1 overflow
}

ThreadedLoader::Position ThreadedLoader::rolled_over(Position p) const {
  const int64_t remaining = source_->size() - p.index_in_epoch;
  if (remaining == 0 || (options_.drop_last && remaining < options_.batch_size)) {
    return {p.epoch + 1, 0};
  }
  return p;
}

void ThreadedLoader::set_position(Position position) {
  const int64_t n = source_->size();
  if (position.epoch < 0 || position.index_in_epoch < 0 || position.index_in_epoch > n) {
    throw DataError("ThreadedLoader::set_position: got epoch " + std::to_string(position.epoch) +
                    ", index_in_epoch " + std::to_string(position.index_in_epoch) +
                    ", expected epoch >= 0 and index_in_epoch in [0, " + std::to_string(n) + "]");
  }
  stop_workers();
  done_.clear();
  orders_.clear();
  stop_ = false;
  started_ = false;
  position_ = rolled_over(position);
}

void ThreadedLoader::start_workers() {
  plan_position_ = position_;
  next_plan_seq_ = 0;
  next_consume_seq_ = 0;
  stop_ = false;
  started_ = true;
  for (int t = 0; t < options_.num_threads; ++t)
    workers_.emplace_back([this] { worker(); });
}

void ThreadedLoader::stop_workers() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  for (auto& w : workers_)
    w.join();
  workers_.clear();
}

ThreadedLoader::Plan ThreadedLoader::make_plan() {
  const int64_t n = source_->size();
  Plan plan;
  plan.seq = next_plan_seq_++;
  plan.epoch = plan_position_.epoch;
  plan.start = plan_position_.index_in_epoch;
  plan.global = std::min(options_.batch_size, n - plan.start);
  plan.after = rolled_over({plan.epoch, plan.start + plan.global});
  plan_position_ = plan.after;
  auto it = orders_.find(plan.epoch);
  if (it == orders_.end()) {
    std::vector<int64_t> order;
    if (options_.shuffle) {
      order = epoch_permutation(n, options_.seed, plan.epoch);
    } else {
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), int64_t{0});
    }
    it = orders_.emplace(plan.epoch, std::make_shared<const std::vector<int64_t>>(std::move(order)))
             .first;
    // Workers hold their own reference; keep only this epoch's and the previous one.
    orders_.erase(orders_.begin(), orders_.lower_bound(plan.epoch - 1));
  }
  plan.order = it->second;
  return plan;
}

void ThreadedLoader::worker() {
  for (;;) {
    Plan plan;
    {
      std::unique_lock lock(mutex_);
      space_.wait(lock, [&] {
        return stop_ || next_plan_seq_ < next_consume_seq_ + options_.prefetch_batches;
      });
      if (stop_) return;
      plan = make_plan();
    }
    Built built;
    built.after = plan.after;
    try {
      build(plan, built);
    } catch (...) {
      built.error = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      done_.emplace(plan.seq, std::move(built));
    }
    ready_.notify_all();
  }
}

int64_t ThreadedLoader::read_valid(const std::vector<int64_t>& order, int64_t slot, Image& image,
                                   Built& out) {
  const int64_t n = static_cast<int64_t>(order.size());
  for (int64_t t = 0; t < n; ++t) {
    const int64_t example = order[static_cast<size_t>((slot + t) % n)];
    {
      std::lock_guard lock(mutex_);
      auto it = known_corrupt_.find(example);
      if (it != known_corrupt_.end()) {
        out.corrupt.emplace_back(example, it->second);
        continue;
      }
    }
    try {
      source_->read(example, image);
      return example;
    } catch (const DataError& e) {
      std::string message = source_->describe(example) + ": " + e.what();
      out.corrupt.emplace_back(example, message);
      std::lock_guard lock(mutex_);
      known_corrupt_.emplace(example, std::move(message));
    }
  }
  throw DataError("ThreadedLoader: no readable example in the source (all " + std::to_string(n) +
                  " are corrupt)");
}

void ThreadedLoader::build(const Plan& plan, Built& out) {
  const auto& o = options_;
  const int64_t ranks = o.num_ranks;
  const int64_t begin = plan.start + o.rank * plan.global / ranks;
  const int64_t end = plan.start + (o.rank + 1) * plan.global / ranks;
  Batch& batch = out.batch;
  batch.batch_size = end - begin;
  batch.labels.resize(static_cast<size_t>(batch.batch_size));
  batch.indices.resize(static_cast<size_t>(batch.batch_size));
  Image image;
  int64_t example_values = 0;
  for (int64_t k = 0; k < batch.batch_size; ++k) {
    const int64_t example = read_valid(*plan.order, begin + k, image, out);
    const int64_t h = preprocess_height(o.preprocess, image.height);
    const int64_t w = preprocess_width(o.preprocess, image.width);
    if (k == 0) {
      batch.height = h;
      batch.width = w;
      batch.channels = image.channels;
      example_values = checked_product({h, w, image.channels}, "ThreadedLoader: example H*W*C");
      batch.images.resize(static_cast<size_t>(
          checked_mul(batch.batch_size, example_values, "ThreadedLoader: batch values")));
    } else if (h != batch.height || w != batch.width || image.channels != batch.channels) {
      throw DataError("ThreadedLoader: " + source_->describe(example) + " gives " +
                      std::to_string(h) + "x" + std::to_string(w) + "x" +
                      std::to_string(image.channels) + ", expected " +
                      std::to_string(batch.height) + "x" + std::to_string(batch.width) + "x" +
                      std::to_string(batch.channels) + " like the rest of the batch");
    }
    preprocess_example(image, o.preprocess, o.seed, plan.epoch, example,
                       batch.images.data() + k * example_values);
    batch.labels[static_cast<size_t>(k)] = source_->label(example);
    batch.indices[static_cast<size_t>(k)] = example;
  }
  if (o.mixup_alpha > 0) {
    mixup_batch(batch, source_->num_classes(), o.mixup_alpha, o.seed, plan.epoch, begin);
  }
}

Batch ThreadedLoader::next() {
  Batch batch;
  next(batch);
  return batch;
}

void ThreadedLoader::next(Batch& out) {
  Built built;
  {
    std::unique_lock lock(mutex_);
    if (!started_) {
      lock.unlock();
      start_workers();
      lock.lock();
    }
    const int64_t seq = next_consume_seq_;
    ready_.wait(lock, [&] { return done_.count(seq) != 0; });
    auto node = done_.extract(seq);
    built = std::move(node.mapped());
    ++next_consume_seq_;
  }
  space_.notify_all();
  position_ = built.after;
  for (auto& [example, message] : built.corrupt) {
    if (!reported_.insert(example).second) continue;
    reports_.push_back(message);
    if (options_.on_corrupt) options_.on_corrupt(message);
  }
  if (built.error) std::rethrow_exception(built.error);
  std::swap(out, built.batch);
}

}  // namespace vmoe::data
