// Tests of the data library: IDX files written here (raw and gzip), dataset checks, the epoch
// permutation, augmentation, rank slicing and exact resume of the loader over in-memory data.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "data/augment.h"
#include "data/data_error.h"
#include "data/epoch_order.h"
#include "data/eval_batches.h"
#include "data/idx_reader.h"
#include "data/image_dataset.h"
#include "data/image_source.h"
#include "data/threaded_loader.h"
#include "test/temp_dir.h"

namespace fs = std::filesystem;
using namespace vmoe::data;

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

using vmoe::testing::TempDir;

enum class Compression : bool { raw, gzip };

std::vector<uint8_t> idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims,
                               const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out;
  const auto put32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<uint8_t>(v >> shift));
    }
  };
  put32(magic);
  for (uint32_t d : dims) {
    put32(d);
  }
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes,
                Compression compression) {
  if (compression == Compression::gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) ==
            static_cast<int>(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
  } else {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    REQUIRE(f.good());
  }
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// [n, h, w] pixels that differ between examples, rows and columns.
std::vector<uint8_t> pattern_pixels(int64_t n, int64_t h, int64_t w) {
  std::vector<uint8_t> p(static_cast<size_t>(n * h * w));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        p[static_cast<size_t>((i * h + y) * w + x)] = static_cast<uint8_t>(1 + i * 37 + y * 11 + x);
      }
    }
  }
  return p;
}

// Writes an images file and a labels file; returns {images path, labels path}.
std::pair<std::string, std::string> write_idx_pair(const TempDir& dir,
                                                   const std::vector<uint8_t>& pixels, int64_t n,
                                                   int64_t h, int64_t w,
                                                   const std::vector<uint8_t>& labels,
                                                   Compression compression) {
  const std::string ext = compression == Compression::gzip ? ".gz" : "";
  const std::string images = dir.file("images-idx3-ubyte" + ext);
  const std::string label_path = dir.file("labels-idx1-ubyte" + ext);
  write_file(
      images,
      idx_bytes(kImagesMagic,
                {static_cast<uint32_t>(n), static_cast<uint32_t>(h), static_cast<uint32_t>(w)},
                pixels),
      compression);
  write_file(label_path, idx_bytes(kLabelsMagic, {static_cast<uint32_t>(labels.size())}, labels),
             compression);
  return {images, label_path};
}

// The message of the DataError `f` throws; fails the test if it throws nothing else.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  FAIL("expected a DataError");
  return "";
}

// An in-memory dataset of n examples [h, w, c] with distinct pixels and labels i % classes.
ImageDataset synthetic_dataset(int64_t n, int64_t h, int64_t w, int64_t c, int32_t classes) {
  ImageDataset d;
  d.n = n;
  d.height = h;
  d.width = w;
  d.channels = c;
  d.num_classes = classes;
  d.images = pattern_pixels(n, h, w * c);
  for (int64_t i = 0; i < n; ++i) {
    d.labels.push_back(static_cast<int32_t>(i % classes));
  }
  return d;
}

// The threaded loader over an in-memory dataset, owning its source.
class MemoryLoader {
 public:
  MemoryLoader(const ImageDataset& dataset, const ThreadedLoaderOptions& options)
      : source_(dataset, "dataset"), loader_(source_, options) {}
  Batch next() { return loader_.next(); }
  void next(Batch& out) { loader_.next(out); }
  int64_t steps_per_epoch() const { return loader_.steps_per_epoch(); }
  ThreadedLoader::Position position() const { return loader_.position(); }
  void set_position(ThreadedLoader::Position p) { loader_.set_position(p); }

 private:
  InMemorySource source_;
  ThreadedLoader loader_;
};

float norm_value(uint8_t v, Normalization norm = {}) {
  return (static_cast<float>(v) / 255.0f - norm.mean) / norm.stddev;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.images == b.images && a.labels == b.labels && a.indices == b.indices &&
         a.batch_size == b.batch_size && a.height == b.height && a.width == b.width &&
         a.channels == b.channels;
}

}  // namespace

TEST_CASE("data: IDX files round trip, raw and gzip", "[data]") {
  const int64_t n = 5, h = 3, w = 4;
  const std::vector<uint8_t> pixels = pattern_pixels(n, h, w);
  const std::vector<uint8_t> labels = {3, 0, 7, 7, 1};
  for (Compression compression : {Compression::raw, Compression::gzip}) {
    TempDir dir;
    const auto [images_path, labels_path] =
        write_idx_pair(dir, pixels, n, h, w, labels, compression);

    const IdxImages images = read_idx_images(images_path);
    CHECK(images.n == n);
    CHECK(images.height == h);
    CHECK(images.width == w);
    CHECK(images.pixels == pixels);
    CHECK(read_idx_labels(labels_path).labels == labels);

    const ImageDataset d = load_idx_dataset(images_path, labels_path);
    CHECK(d.n == n);
    CHECK(d.height == h);
    CHECK(d.width == w);
    CHECK(d.channels == 1);
    CHECK(d.num_classes == 8);  // max label + 1
    CHECK(d.images == pixels);
    CHECK(d.labels == std::vector<int32_t>{3, 0, 7, 7, 1});

    const ImageDataset head = load_idx_dataset(images_path, labels_path, 2, 10);
    CHECK(head.n == 2);
    CHECK(head.num_classes == 10);
    CHECK(head.labels == std::vector<int32_t>{3, 0});
    CHECK(head.images == std::vector<uint8_t>(pixels.begin(), pixels.begin() + 2 * h * w));
  }
}

TEST_CASE("data: IDX errors name the file and what was expected", "[data]") {
  TempDir dir;
  const std::vector<uint8_t> pixels = pattern_pixels(10, 3, 4);

  const std::string missing = dir.file("train-images-idx3-ubyte.gz");
  CHECK(error_of([&] { read_idx_images(missing); }) ==
        "cannot open IDX file '" + missing + "': No such file or directory");

  const std::string labels = dir.file("labels");
  write_file(labels, idx_bytes(kLabelsMagic, {3}, {1, 2, 3}), Compression::raw);
  CHECK(error_of([&] { read_idx_images(labels); }) ==
        "'" + labels + "': bad magic 0x00000801 (u8, 1-D), expected 0x00000803 (u8 images)");
  const std::string junk = dir.file("junk");
  write_file(junk, idx_bytes(0x12345678, {}, {}), Compression::raw);
  CHECK(error_of([&] { read_idx_labels(junk); }) ==
        "'" + junk + "': bad magic 0x12345678, expected 0x00000801 (u8 labels)");

  // Header promises 10 images of 3x4 = 120 bytes; the file holds 50.
  const std::vector<uint8_t> full = idx_bytes(kImagesMagic, {10, 3, 4}, pixels);
  const std::vector<uint8_t> cut(full.begin(), full.begin() + 16 + 50);
  for (Compression compression : {Compression::raw, Compression::gzip}) {
    const std::string truncated = dir.file(compression == Compression::gzip ? "t.gz" : "t");
    write_file(truncated, cut, compression);
    CHECK(error_of([&] { read_idx_images(truncated); }) ==
          "'" + truncated + "': truncated: header promises 120 image bytes, got 50");
  }

  // A gzip file cut short: the payload ends early and zlib's complaint is passed on.
  const std::string gz = dir.file("full.gz");
  write_file(gz, full, Compression::gzip);
  const std::vector<uint8_t> gz_bytes = read_file_bytes(gz);
  write_file(gz, std::vector<uint8_t>(gz_bytes.begin(), gz_bytes.begin() + gz_bytes.size() / 2),
             Compression::raw);
  const std::string gz_error = error_of([&] { read_idx_images(gz); });
  CHECK(gz_error.rfind("'" + gz + "': truncated: header promises 120 image bytes, got ", 0) == 0);
  CHECK(gz_error.ends_with(" (gzip: unexpected end of file)"));
  // Only the gzip trailer (CRC, length) missing: every byte arrives, the file is still corrupt.
  write_file(gz, std::vector<uint8_t>(gz_bytes.begin(), gz_bytes.end() - 4), Compression::raw);
  CHECK(error_of([&] { read_idx_images(gz); }) ==
        "'" + gz + "': corrupt gzip stream: unexpected end of file");

  const std::string header_only = dir.file("header");
  write_file(header_only, {0, 0, 8, 3, 0, 0}, Compression::raw);
  CHECK(error_of([&] { read_idx_images(header_only); }) ==
        "'" + header_only + "': truncated: header promises 3 dims (12 bytes), got 2");

  const std::string trailing = dir.file("trailing");
  std::vector<uint8_t> longer = full;
  longer.push_back(9);
  write_file(trailing, longer, Compression::raw);
  CHECK(error_of([&] { read_idx_images(trailing); }) ==
        "'" + trailing + "': 1 unexpected bytes after the 120 image bytes the header promises");

  // Truncation is found even when only a prefix is kept.
  const std::string t = dir.file("t");
  CHECK_THROWS_AS(read_idx_images(t, 1), DataError);
}

TEST_CASE("data: sizes declared by IDX headers are bounded before use (issue 11)", "[data]") {
  TempDir dir;
  // 1 image of 4294967295 x 4294967295: H*W alone overflows int64.
  const std::string wide = dir.file("wide");
  write_file(wide, idx_bytes(kImagesMagic, {1, 0xffffffffu, 0xffffffffu}, {1, 2, 3}),
             Compression::raw);
  CHECK(error_of([&] { read_idx_images(wide); }) ==
        "'" + wide + "': image height (header dim 1) is 4294967295, expected at most 65536");
  const std::string tall = dir.file("tall");
  write_file(tall, idx_bytes(kImagesMagic, {1, 28, 70000}, {1, 2, 3}), Compression::raw);
  CHECK(error_of([&] { read_idx_images(tall); }) ==
        "'" + tall + "': image width (header dim 2) is 70000, expected at most 65536");
  // 4294967295 images of 65536 x 65536 in a 19-byte file.
  const std::string many = dir.file("many");
  write_file(many, idx_bytes(kImagesMagic, {0xffffffffu, 65536, 65536}, {1, 2, 3}),
             Compression::gzip);
  CHECK(error_of([&] { read_idx_images(many); }) ==
        "'" + many +
            "': header promises 4294967295 images of 4294967296 bytes each, more than the 1 "
            "TiB this reader accepts");
  // An IDX file of another dimensionality is refused by its magic, never indexed past its dims.
  const std::string flat = dir.file("flat");
  write_file(flat, idx_bytes(0x00000802, {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), Compression::raw);
  CHECK_THROWS_AS(read_idx_images(flat), DataError);
}

TEST_CASE("data: dataset dims whose product overflows int64 are an error, not a wrap", "[data]") {
  ImageDataset d;
  d.n = int64_t{1} << 40;
  d.height = int64_t{1} << 20;
  d.width = int64_t{1} << 20;
  d.channels = 3;
  d.num_classes = 2;
  CHECK(error_of([&] { validate_dataset(d, "huge"); }) ==
        "huge: n*H*W*C = 1099511627776 x 1048576 x 1048576 x 3 overflows 64 bits");
  ImageDataset ok = synthetic_dataset(2, 2, 2, 1, 2);
  ok.height = int64_t{1} << 62;
  ok.width = 4;
  CHECK_THROWS_WITH(eval_batch(ok, 0, 1, {}), Catch::Matchers::Contains("overflows 64 bits"));
}

TEST_CASE("data: images and labels must agree", "[data]") {
  TempDir dir;
  const std::vector<uint8_t> pixels = pattern_pixels(4, 2, 2);
  const auto [images, labels] = write_idx_pair(dir, pixels, 4, 2, 2, {0, 1, 2}, Compression::raw);
  CHECK(error_of([&] { load_idx_dataset(images, labels); }) ==
        "IDX dataset ('" + images + "', '" + labels + "'): '" + images + "' holds 4 images but '" +
            labels + "' holds 3 labels");

  TempDir dir2;
  const auto [images2, labels2] =
      write_idx_pair(dir2, pixels, 4, 2, 2, {0, 1, 9, 2}, Compression::gzip);
  CHECK(load_idx_dataset(images2, labels2).num_classes == 10);
  CHECK(error_of([&] { load_idx_dataset(images2, labels2, 0, 5); }) ==
        "IDX dataset ('" + images2 + "', '" + labels2 +
            "'): label 9 of example 2 is outside [0, 5)");
  // The bad label is beyond the kept prefix, so it does not matter.
  CHECK(load_idx_dataset(images2, labels2, 2, 5).n == 2);
}

TEST_CASE("data: split file names fall back to the uncompressed name", "[data]") {
  TempDir dir;
  const std::string base = dir.file("");
  IdxSplitFiles files = idx_split_files(base, Split::test);
  CHECK(files.images == dir.file("t10k-images-idx3-ubyte.gz"));
  CHECK(files.labels == dir.file("t10k-labels-idx1-ubyte.gz"));
  write_file(dir.file("train-labels-idx1-ubyte"), {0}, Compression::raw);
  files = idx_split_files(base, Split::train);
  CHECK(files.images == dir.file("train-images-idx3-ubyte.gz"));
  CHECK(files.labels == dir.file("train-labels-idx1-ubyte"));
}

TEST_CASE("data: epoch permutation is a deterministic permutation per (seed, epoch)", "[data]") {
  const int64_t n = 1000;
  const std::vector<int64_t> p = epoch_permutation(n, 42, 0);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(n);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  CHECK(sorted == identity);
  CHECK(p != identity);
  CHECK(epoch_permutation(n, 42, 0) == p);
  CHECK(epoch_permutation(n, 42, 1) != p);
  CHECK(epoch_permutation(n, 43, 0) != p);
  CHECK(epoch_permutation(0, 1, 0).empty());
  CHECK(epoch_permutation(1, 1, 5) == std::vector<int64_t>{0});

  // Every element lands in every slot about equally often over many epochs.
  const int64_t small = 4, epochs = 4000;
  std::vector<int64_t> counts(small * small, 0);
  for (int64_t e = 0; e < epochs; ++e) {
    const std::vector<int64_t> q = epoch_permutation(small, 7, e);
    for (int64_t slot = 0; slot < small; ++slot) {
      ++counts[static_cast<size_t>(slot * small + q[slot])];
    }
  }
  for (int64_t c : counts) {
    CHECK(std::abs(c - epochs / small) < 100);  // sd ~ 27
  }
}

TEST_CASE("data: every example once per epoch, ranks partition the global batch", "[data]") {
  const ImageDataset d = synthetic_dataset(11, 5, 6, 2, 3);
  ThreadedLoaderOptions o;
  o.batch_size = 4;
  o.drop_last = false;
  o.seed = 9;
  o.preprocess.random_flip = true;
  o.preprocess.crop_padding = 2;
  MemoryLoader single(d, o);
  o.num_ranks = 2;
  MemoryLoader rank0(d, o);
  o.rank = 1;
  MemoryLoader rank1(d, o);
  CHECK(single.steps_per_epoch() == 3);

  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> seen;
    std::vector<int64_t> sizes;
    for (int64_t step = 0; step < single.steps_per_epoch(); ++step) {
      const Batch whole = single.next();
      const Batch a = rank0.next();
      const Batch b = rank1.next();
      sizes.push_back(whole.batch_size);
      seen.insert(seen.end(), whole.indices.begin(), whole.indices.end());
      for (int64_t k = 0; k < whole.batch_size; ++k) {
        CHECK(whole.labels[k] == d.labels[whole.indices[k]]);
      }
      // Rank slices concatenated give the single-rank batch, augmentation included.
      CHECK(a.batch_size + b.batch_size == whole.batch_size);
      Batch joined = a;
      joined.batch_size += b.batch_size;
      joined.images.insert(joined.images.end(), b.images.begin(), b.images.end());
      joined.labels.insert(joined.labels.end(), b.labels.begin(), b.labels.end());
      joined.indices.insert(joined.indices.end(), b.indices.begin(), b.indices.end());
      CHECK(same_batch(joined, whole));
      if (whole.batch_size == 3) {  // partial last batch: rank r gets [r*3/2, (r+1)*3/2)
        CHECK(a.batch_size == 1);
        CHECK(b.batch_size == 2);
      }
    }
    CHECK(sizes == std::vector<int64_t>{4, 4, 3});
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all(11);
    std::iota(all.begin(), all.end(), int64_t{0});
    CHECK(seen == all);
    CHECK(single.position() == ThreadedLoader::Position{epoch + 1, 0});
  }

  // drop_last: only full batches, no example twice in an epoch.
  ThreadedLoaderOptions full;
  full.batch_size = 4;
  MemoryLoader dropper(d, full);
  CHECK(dropper.steps_per_epoch() == 2);
  std::vector<int64_t> seen;
  for (int step = 0; step < 2; ++step) {
    const Batch batch = dropper.next();
    CHECK(batch.batch_size == 4);
    CHECK(batch.images.size() == 4u * 5 * 6 * 2);
    seen.insert(seen.end(), batch.indices.begin(), batch.indices.end());
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
  CHECK(dropper.position() == ThreadedLoader::Position{1, 0});
}

TEST_CASE("data: normalisation maps pixels to (p/255 - mean)/stddev", "[data]") {
  ImageDataset d = synthetic_dataset(2, 1, 3, 1, 2);
  d.images = {0, 255, 51, 102, 204, 1};
  ThreadedLoaderOptions o;
  o.batch_size = 2;
  o.shuffle = false;
  const Batch b = MemoryLoader(d, o).next();
  CHECK(b.indices == std::vector<int64_t>{0, 1});
  CHECK(b.images[0] == -1.0f);
  CHECK(b.images[1] == 1.0f);
  CHECK(b.images[2] == Approx(-0.6f));
  CHECK(b.images[3] == Approx(-0.2f));

  const Normalization mnist{0.1307f, 0.3081f};
  o.preprocess.normalization = mnist;
  const Batch m = MemoryLoader(d, o).next();
  for (size_t k = 0; k < d.images.size(); ++k) {
    CHECK(m.images[k] == Approx((d.images[k] / 255.0 - 0.1307) / 0.3081).epsilon(1e-6));
  }
  CHECK(eval_batch(d, 0, 2, mnist).images == m.images);

  o.preprocess.normalization = {0.5f, 0.0f};
  CHECK(error_of([&] { MemoryLoader loader(d, o); }) ==
        "normalization stddev must be finite and > 0, got 0.000000");
}

TEST_CASE("data: random flip mirrors rows", "[data]") {
  const int64_t h = 3, w = 5, c = 2;
  const ImageDataset d = synthetic_dataset(64, h, w, c, 4);
  ThreadedLoaderOptions o;
  o.batch_size = 64;
  o.preprocess.random_flip = true;
  o.seed = 3;
  MemoryLoader loader(d, o);
  const Batch b = loader.next();
  int flipped = 0;
  for (int64_t k = 0; k < b.batch_size; ++k) {
    const int64_t i = b.indices[k];
    const bool flip = choose_augment({true, 0}, 3, 0, i).flip;
    flipped += flip;
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sx = flip ? w - 1 - x : x;
        for (int64_t ch = 0; ch < c; ++ch) {
          const uint8_t in = d.images[((i * h + y) * w + sx) * c + ch];
          CHECK(b.images[((k * h + y) * w + x) * c + ch] == norm_value(in));
        }
      }
    }
  }
  CHECK(flipped > 16);
  CHECK(flipped < 48);
  // Without random_flip nothing is mirrored.
  CHECK_FALSE(choose_augment({false, 0}, 3, 0, 0).flip);
}

TEST_CASE("data: crop with padding keeps the shape, shifts content, is deterministic", "[data]") {
  // One example by hand: p = 1, offsets (0, 2) move content down one row and left one column.
  const std::vector<uint8_t> src = {10, 20, 30, 40, 50, 60, 70, 80, 90};  // [3, 3, 1]
  std::array<float, 256> table{};  // identity, so the expected values read as pixels
  std::iota(table.begin(), table.end(), 0.0f);
  std::vector<float> out(9);
  augment_example(src.data(), 3, 3, 1, 1, {false, 0, 2}, table, out.data());
  CHECK(out == std::vector<float>{0, 0, 0, 20, 30, 0, 50, 60, 0});
  augment_example(src.data(), 3, 3, 1, 1, {true, 0, 2}, table, out.data());
  CHECK(out == std::vector<float>{0, 0, 0, 0, 30, 20, 0, 60, 50});
  augment_example(src.data(), 3, 3, 1, 1, {false, 1, 1}, table, out.data());
  CHECK(out == std::vector<float>{10, 20, 30, 40, 50, 60, 70, 80, 90});

  const int64_t h = 6, w = 7, p = 2;
  const ImageDataset d = synthetic_dataset(40, h, w, 1, 2);
  ThreadedLoaderOptions o;
  o.batch_size = 40;
  o.preprocess.crop_padding = p;
  o.seed = 11;
  MemoryLoader loader(d, o);
  const Batch b = loader.next();
  CHECK(b.height == h);
  CHECK(b.width == w);
  CHECK(b.images.size() == static_cast<size_t>(40 * h * w));
  int shifted = 0;
  for (int64_t k = 0; k < b.batch_size; ++k) {
    const int64_t i = b.indices[k];
    const AugmentChoice choice = choose_augment({false, p}, 11, 0, i);
    CHECK(choice.crop_y >= 0);
    CHECK(choice.crop_y <= 2 * p);
    CHECK(choice.crop_x >= 0);
    CHECK(choice.crop_x <= 2 * p);
    shifted += choice.crop_y != p || choice.crop_x != p;
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sy = y + choice.crop_y - p, sx = x + choice.crop_x - p;
        const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
        const uint8_t in = inside ? d.images[(i * h + sy) * w + sx] : 0;
        CHECK(b.images[(k * h + y) * w + x] == norm_value(in));
      }
    }
  }
  CHECK(shifted > 20);

  MemoryLoader again(d, o);
  CHECK(same_batch(again.next(), b));
  o.seed = 12;
  MemoryLoader other_seed(d, o);
  CHECK_FALSE(same_batch(other_seed.next(), b));
}

TEST_CASE("data: set_position resumes the exact stream", "[data]") {
  const ImageDataset d = synthetic_dataset(10, 4, 4, 1, 3);
  ThreadedLoaderOptions o;
  o.batch_size = 3;
  o.seed = 5;
  o.preprocess.random_flip = true;
  o.preprocess.crop_padding = 1;
  MemoryLoader straight(d, o);
  CHECK(straight.steps_per_epoch() == 3);  // drop_last: the 10th example is skipped
  std::vector<Batch> stream;
  std::vector<ThreadedLoader::Position> positions;
  for (int step = 0; step < 10; ++step) {
    positions.push_back(straight.position());
    stream.push_back(straight.next());
  }
  CHECK(positions[3] == ThreadedLoader::Position{1, 0});
  CHECK(positions[4] == ThreadedLoader::Position{1, 3});
  // Epochs differ.
  CHECK_FALSE(same_batch(stream[0], stream[3]));

  for (int resume_at : {1, 3, 4, 8}) {
    MemoryLoader resumed(d, o);
    resumed.set_position(positions[resume_at]);
    for (int step = resume_at; step < 10; ++step) {
      CHECK(same_batch(resumed.next(), stream[step]));
    }
    CHECK(resumed.position() == straight.position());
  }

  // Refilling one Batch gives the same stream.
  MemoryLoader refill(d, o);
  Batch reused;
  for (int step = 0; step < 10; ++step) {
    refill.next(reused);
    CHECK(same_batch(reused, stream[step]));
  }

  // A position at the end of an epoch is the start of the next one.
  MemoryLoader end(d, o);
  end.set_position({0, 9});
  CHECK(end.position() == ThreadedLoader::Position{1, 0});
  CHECK_THROWS_AS(end.set_position({0, 11}), DataError);
  CHECK_THROWS_AS(end.set_position({-1, 0}), DataError);
}

TEST_CASE("data: loader options are checked", "[data]") {
  const ImageDataset d = synthetic_dataset(10, 2, 2, 1, 2);
  ThreadedLoaderOptions o;
  o.batch_size = 5;
  o.num_ranks = 2;
  CHECK(error_of([&] { MemoryLoader loader(d, o); }) ==
        "ThreadedLoader: batch_size must be > 0 and a multiple of num_ranks 2, got 5");
  o.batch_size = 4;
  o.rank = 2;
  CHECK(error_of([&] { MemoryLoader loader(d, o); }) ==
        "ThreadedLoader: rank must be in [0, 2), got 2");
  o = {};
  o.batch_size = 11;
  CHECK(error_of([&] { MemoryLoader loader(d, o); }) ==
        "ThreadedLoader: batch_size 11 exceeds the source's 10 examples with drop_last, so no "
        "batch could be made");
  o.drop_last = false;
  CHECK(MemoryLoader(d, o).steps_per_epoch() == 1);
  o.preprocess.crop_padding = -1;
  CHECK_THROWS_AS(MemoryLoader(d, o), DataError);
  ImageDataset broken = d;
  broken.labels[3] = 2;
  CHECK(error_of([&] { MemoryLoader loader(broken, ThreadedLoaderOptions{}); }) ==
        "dataset: label 2 of example 3 is outside [0, 2)");
}

TEST_CASE("data: eval batches go in order without augmentation, last one partial", "[data]") {
  const ImageDataset d = synthetic_dataset(10, 3, 3, 1, 4);
  CHECK(num_eval_batches(d, 4) == 3);
  std::vector<int64_t> seen;
  for (int64_t start = 0; start < d.n; start += 4) {
    const Batch b = eval_batch(d, start, 4);
    CHECK(b.batch_size == std::min<int64_t>(4, d.n - start));
    for (int64_t k = 0; k < b.batch_size; ++k) {
      CHECK(b.labels[k] == d.labels[start + k]);
      for (int64_t j = 0; j < 9; ++j) {
        CHECK(b.images[k * 9 + j] == norm_value(d.images[(start + k) * 9 + j]));
      }
    }
    seen.insert(seen.end(), b.indices.begin(), b.indices.end());
  }
  std::vector<int64_t> all(10);
  std::iota(all.begin(), all.end(), int64_t{0});
  CHECK(seen == all);
  CHECK_THROWS_AS(eval_batch(d, 10, 4), DataError);
  CHECK_THROWS_AS(num_eval_batches(d, 0), DataError);
}

TEST_CASE("data: real Fashion-MNIST splits", "[data][real]") {
  const char* env = std::getenv("VMOE_FASHION_MNIST_DIR");
  const std::string dir = env != nullptr ? env : "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz") ||
      !fs::exists(dir + "/train-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST not found in " + dir + "; skipping");
    return;
  }
  const struct {
    Split split;
    int64_t n;
  } splits[] = {{Split::test, 10000}, {Split::train, 60000}};
  for (const auto& s : splits) {
    const ImageDataset d = load_fashion_mnist_split(dir, s.split);
    CHECK(d.n == s.n);
    CHECK(d.height == 28);
    CHECK(d.width == 28);
    CHECK(d.channels == 1);
    CHECK(d.num_classes == 10);
    // Both splits are balanced: n / 10 of every class.
    std::vector<int64_t> per_class(10, 0);
    for (int32_t label : d.labels) {
      ++per_class[static_cast<size_t>(label)];
    }
    CHECK(per_class == std::vector<int64_t>(10, s.n / 10));
  }
}
