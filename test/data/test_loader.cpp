// Tests of ThreadedLoader: epoch coverage across ranks, independence of the thread count,
// agreement with a reference built from the epoch order and preprocess_example, exact resume,
// deterministic skipping of corrupt examples, error propagation and clean early shutdown.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "data/data_error.h"
#include "data/epoch_order.h"
#include "data/image_source.h"
#include "data/preprocess.h"
#include "data/threaded_loader.h"

using namespace vmoe::data;

namespace {

// n examples of 6 x 5 x 1; example i has every pixel (i * 13) % 256 and label i % 7.
ImageDataset synthetic(int64_t n) {
  ImageDataset d;
  d.n = n;
  d.height = 6;
  d.width = 5;
  d.channels = 1;
  d.num_classes = 7;
  for (int64_t i = 0; i < n; ++i) {
    d.images.insert(d.images.end(), 30, uint8_t((i * 13 + 1) % 256));
    d.labels.push_back(int32_t(i % 7));
  }
  return d;
}

// Wraps a source: examples in `corrupt` throw DataError, `fatal` throws runtime_error, and each
// read sleeps `delay`.
class FaultySource final : public ImageSource {
 public:
  FaultySource(const ImageSource& inner, std::set<int64_t> corrupt, int64_t fatal = -1,
               std::chrono::milliseconds delay = std::chrono::milliseconds(0))
      : inner_(inner), corrupt_(std::move(corrupt)), fatal_(fatal), delay_(delay) {}
  int64_t size() const override { return inner_.size(); }
  int32_t num_classes() const override { return inner_.num_classes(); }
  int32_t label(int64_t i) const override { return inner_.label(i); }
  void read(int64_t i, Image& out) const override {
    ++reads;
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (corrupt_.count(i) != 0) throw DataError("bad bytes");
    if (i == fatal_) throw std::runtime_error("disk on fire");
    inner_.read(i, out);
  }
  std::string describe(int64_t i) const override { return "file_" + std::to_string(i) + ".jpg"; }
  mutable std::atomic<int64_t> reads{0};

 private:
  const ImageSource& inner_;
  std::set<int64_t> corrupt_;
  int64_t fatal_;
  std::chrono::milliseconds delay_;
};

ThreadedLoaderOptions options(int64_t batch, int threads, int rank = 0, int ranks = 1) {
  ThreadedLoaderOptions o;
  o.batch_size = batch;
  o.seed = 11;
  o.num_threads = threads;
  o.prefetch_batches = 3;
  o.rank = rank;
  o.num_ranks = ranks;
  o.preprocess.random_flip = true;
  o.preprocess.crop_padding = 1;
  return o;
}

}  // namespace

TEST_CASE("threaded loader: every example exactly once per epoch across 1, 2, 4 ranks",
          "[data][loader]") {
  const InMemorySource source(synthetic(40), "synthetic");
  for (int ranks : {1, 2, 4}) {
    for (bool drop_last : {true, false}) {
      std::vector<int64_t> seen_epoch0, seen_epoch1;
      for (int r = 0; r < ranks; ++r) {
        auto o = options(8, 2, r, ranks);
        o.drop_last = drop_last;
        ThreadedLoader loader(source, o);
        REQUIRE(loader.steps_per_epoch() == 5);
        for (int step = 0; step < 10; ++step) {
          const Batch b = loader.next();
          REQUIRE(b.batch_size == 8 / ranks);
          auto& seen = step < 5 ? seen_epoch0 : seen_epoch1;
          seen.insert(seen.end(), b.indices.begin(), b.indices.end());
        }
        CHECK(loader.position() == ThreadedLoader::Position{2, 0});
      }
      for (auto* seen : {&seen_epoch0, &seen_epoch1}) {
        std::set<int64_t> unique(seen->begin(), seen->end());
        CHECK(seen->size() == 40);
        CHECK(unique.size() == 40);
      }
      CHECK(seen_epoch0 != seen_epoch1);  // reshuffled
    }
  }
}

TEST_CASE("threaded loader: same batches for 1 and 3 threads, equal to the reference stream",
          "[data][loader]") {
  const ImageDataset data = synthetic(45);
  const InMemorySource source(data, "synthetic");
  const ThreadedLoaderOptions o = options(6, 1);
  ThreadedLoader one(source, o);
  ThreadedLoader three(source, options(6, 3));
  // The reference: 7 full batches per epoch (drop_last) in the epoch's permutation, each
  // example through preprocess_example with (seed, epoch, example).
  const int64_t example_values = 6 * 5 * 1;
  for (int step = 0; step < 20; ++step) {  // crosses two epoch boundaries (7 steps each)
    const int64_t epoch = step / 7;
    const int64_t start = (step % 7) * 6;
    const std::vector<int64_t> order = epoch_permutation(45, 11, epoch);
    std::vector<int64_t> indices(order.begin() + start, order.begin() + start + 6);
    std::vector<float> images(size_t(6 * example_values));
    std::vector<int32_t> labels;
    Image image;
    for (size_t k = 0; k < 6; ++k) {
      source.read(indices[k], image);
      preprocess_example(image, o.preprocess, o.seed, epoch, indices[k],
                         images.data() + k * example_values);
      labels.push_back(data.labels[size_t(indices[k])]);
    }
    const Batch a = one.next();
    const Batch b = three.next();
    REQUIRE(a.indices == b.indices);
    REQUIRE(a.images == b.images);
    REQUIRE(a.labels == b.labels);
    REQUIRE(a.indices == indices);
    REQUIRE(a.images == images);
    REQUIRE(a.labels == labels);
    const int64_t next_start = start + 6;
    REQUIRE(one.position() == (next_start + 6 > 45 ? ThreadedLoader::Position{epoch + 1, 0}
                                                   : ThreadedLoader::Position{epoch, next_start}));
  }
}

TEST_CASE("threaded loader: a resumed position continues exactly, on another rank count",
          "[data][loader]") {
  const InMemorySource source(synthetic(30), "synthetic");
  ThreadedLoader full(source, options(4, 2));
  std::vector<Batch> stream;
  for (int step = 0; step < 12; ++step)
    stream.push_back(full.next());
  ThreadedLoader first(source, options(4, 2));
  for (int step = 0; step < 5; ++step)
    first.next();
  const auto saved = first.position();
  CHECK(saved == ThreadedLoader::Position{0, 20});
  // Resume on 2 ranks: the concatenated slices are the 1-rank batches.
  ThreadedLoader r0(source, options(4, 3, 0, 2));
  ThreadedLoader r1(source, options(4, 1, 1, 2));
  r0.set_position(saved);
  r1.set_position(saved);
  for (int step = 5; step < 12; ++step) {
    const Batch a = r0.next();
    const Batch b = r1.next();
    std::vector<int64_t> indices = a.indices;
    indices.insert(indices.end(), b.indices.begin(), b.indices.end());
    std::vector<float> images = a.images;
    images.insert(images.end(), b.images.begin(), b.images.end());
    REQUIRE(indices == stream[size_t(step)].indices);
    REQUIRE(images == stream[size_t(step)].images);
  }
  CHECK(r0.position() == full.position());
  // set_position after batches were prefetched restarts cleanly.
  r0.set_position(saved);
  ThreadedLoader again(source, options(4, 2, 0, 2));
  again.set_position(saved);
  CHECK(r0.next().indices == again.next().indices);
  CHECK_THROWS_AS(r0.set_position({0, 31}), DataError);
}

TEST_CASE("threaded loader: corrupt examples are skipped deterministically and reported once",
          "[data][loader]") {
  const InMemorySource inner(synthetic(24), "synthetic");
  const FaultySource faulty(inner, {3, 4, 17});
  auto run = [&](int threads, int ranks) {
    std::vector<int64_t> indices;  // concatenated over ranks, batch by batch
    std::vector<std::string> reports;
    std::vector<std::vector<int64_t>> per_rank(static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) {
      auto o = options(6, threads, r, ranks);
      std::vector<std::string> calls;
      o.on_corrupt = [&](const std::string& m) { calls.push_back(m); };
      ThreadedLoader loader(faulty, o);
      for (int step = 0; step < 12; ++step) {  // three epochs
        const Batch b = loader.next();
        for (int64_t i : b.indices)
          REQUIRE((i != 3 && i != 4 && i != 17));
        per_rank[size_t(r)].insert(per_rank[size_t(r)].end(), b.indices.begin(), b.indices.end());
      }
      CHECK(calls == loader.corrupt_reports());
      reports.insert(reports.end(), calls.begin(), calls.end());
    }
    // Interleave the rank slices back into the global order.
    const size_t slice = size_t(6 / ranks);
    for (size_t step = 0; step < 12; ++step)
      for (size_t r = 0; r < size_t(ranks); ++r)
        indices.insert(indices.end(), per_rank[r].begin() + std::ptrdiff_t(step * slice),
                       per_rank[r].begin() + std::ptrdiff_t((step + 1) * slice));
    return std::make_pair(indices, reports);
  };
  const auto [indices1, reports1] = run(1, 1);
  const auto [indices3, reports3] = run(3, 1);
  const auto [indices2r, reports2r] = run(2, 2);
  CHECK(indices1 == indices3);
  CHECK(indices1 == indices2r);
  CHECK(reports1 == reports3);
  // Reported once each, by path, even over three epochs.
  std::set<std::string> unique(reports1.begin(), reports1.end());
  CHECK(reports1.size() == 3);
  CHECK(unique.count("file_3.jpg: bad bytes") == 1);
  CHECK(unique.count("file_17.jpg: bad bytes") == 1);
  CHECK(std::set<std::string>(reports2r.begin(), reports2r.end()) == unique);
  // Each corrupt slot holds the next readable example of the epoch order: 24 slots per epoch.
  CHECK(indices1.size() == 72);
}

TEST_CASE("threaded loader: worker errors reach next, early destruction does not hang",
          "[data][loader]") {
  const InMemorySource inner(synthetic(40), "synthetic");
  {
    auto o = options(40, 2);
    o.shuffle = false;
    const FaultySource fatal(inner, {}, 5);
    ThreadedLoader loader(fatal, o);
    CHECK_THROWS_WITH(loader.next(), "disk on fire");
  }
  {
    // Slow reads, a deep queue, destroyed after one batch: the destructor joins promptly.
    const FaultySource slow(inner, {}, -1, std::chrono::milliseconds(2));
    const auto start = std::chrono::steady_clock::now();
    {
      auto o = options(4, 3);
      o.prefetch_batches = 8;
      ThreadedLoader loader(slow, o);
      loader.next();
    }
    { ThreadedLoader never_used(slow, options(4, 2)); }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed < std::chrono::seconds(5));
    // Bounded prefetch: at most (1 consumed + 8 queued + 3 in flight) batches were read.
    CHECK(slow.reads.load() <= 12 * 4);
  }
  CHECK_THROWS_AS(ThreadedLoader(inner, options(6, 0)), DataError);
  CHECK_THROWS_WITH(ThreadedLoader(inner, options(6, 100000)),
                    "ThreadedLoader: num_threads must be in [1, 1024], got 100000");
  auto deep = options(6, 2);
  deep.prefetch_batches = 1 << 30;
  CHECK_THROWS_WITH(ThreadedLoader(inner, deep),
                    "ThreadedLoader: prefetch_batches must be in [1, 1024], got 1073741824");
  // A batch size near INT64_MAX without drop_last is one partial batch, not an overflow.
  auto whole = options(6, 1);
  whole.batch_size = INT64_MAX;
  whole.drop_last = false;
  CHECK(ThreadedLoader(inner, whole).steps_per_epoch() == 1);
  CHECK_THROWS_AS(ThreadedLoader(inner, options(6, 2, 0, 4)), DataError);
}
