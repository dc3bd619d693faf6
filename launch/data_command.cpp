// `vmoe data pack KIND SRC DST` (any reader -> one HDF5 shard, with a progress bar) and
// `vmoe data inspect PATH` (examples, per-class counts, image sizes, a PNG grid of samples).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "data/cifar_reader.h"
#include "data/data_error.h"
#include "data/hdf5_shards.h"
#include "data/image_dataset.h"
#include "data/image_folder.h"
#include "data/image_source.h"
#include "data/png_codec.h"
#include "launch/commands.h"
#include "launch/progress.h"

namespace vmoe {

namespace {

namespace fs = std::filesystem;

bool exists_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The reader kind of `path` when --kind is not given: a file is a shard; a directory with the
// standard CIFAR or IDX file names is that dataset; any other directory is an image folder.
std::string detect_kind(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error("'" + path + "' does not exist");
  if (!fs::is_directory(path, ec)) return "h5";
  const fs::path d = path;
  if (exists_file(d / "data_batch_1.bin") || exists_file(d / "test_batch.bin")) return "cifar10";
  if (exists_file(d / "train.bin") || exists_file(d / "test.bin")) return "cifar100";
  for (const char* f : {"train-images-idx3-ubyte", "t10k-images-idx3-ubyte"}) {
    if (exists_file(d / f) || exists_file(d / (std::string(f) + ".gz"))) return "idx";
  }
  return "folder";
}

data::Split split_from(const std::string& split) {
  if (split == "train") return data::Split::train;
  if (split == "test") return data::Split::test;
  throw std::runtime_error("--split must be train or test, got '" + split + "'");
}

// The source of `kind` at `path`. channels: 0 = the data's own; otherwise the images must have
// (image folders: are converted to) that many channels.
std::unique_ptr<data::ImageSource> open_source(const std::string& kind, const std::string& path,
                                               const std::string& split, int64_t channels) {
  if (channels != 0 && channels != 1 && channels != 3) {
    throw std::runtime_error("--channels must be 1 or 3, got " + std::to_string(channels));
  }
  if (kind == "folder") {
    return std::make_unique<data::ImageFolderSource>(path, channels == 0 ? 3 : channels);
  }
  data::ImageDataset ds;
  if (kind == "idx") {
    const data::IdxSplitFiles files = data::idx_split_files(path, split_from(split));
    ds = data::load_idx_dataset(files.images, files.labels);
  } else if (kind == "cifar10") {
    ds = data::load_cifar10(path, split_from(split));
  } else if (kind == "cifar100") {
    ds = data::load_cifar100(path, split_from(split));
  } else if (kind == "h5") {
    ds = data::load_hdf5_shard(path);
  } else {
    throw std::runtime_error("unknown dataset kind '" + kind +
                             "', expected idx, cifar10, cifar100, folder or h5");
  }
  if (channels != 0 && ds.channels != channels) {
    throw std::runtime_error("--channels " + std::to_string(channels) + " but the " + kind +
                             " images in '" + path + "' have " + std::to_string(ds.channels) +
                             " (only image folders are converted)");
  }
  return std::make_unique<data::InMemorySource>(std::move(ds), path);
}

int pack(const DataArgs& args) {
  if (args.kind == "h5")
    throw std::runtime_error("`vmoe data pack` reads idx, cifar10, cifar100 or folder");
  const auto source = open_source(args.kind, args.src, args.split, args.channels);
  std::printf("packing %lld examples of %d classes from '%s' (%s) into '%s'\n",
              static_cast<long long>(source->size()), source->num_classes(), args.src.c_str(),
              args.kind.c_str(), args.dst.c_str());
  std::fflush(stdout);
  const fs::path parent = fs::path(args.dst).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  Progress progress(source->size(), Progress::Style::automatic, 1000);
  const auto start = std::chrono::steady_clock::now();
  data::write_hdf5_shard(
      args.dst, *source, args.image_size, args.image_size, [&](int64_t done, int64_t total) {
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        progress.update(done - 1, std::numeric_limits<double>::quiet_NaN(),
                        s > 0 ? double(done) / s : 0.0);
        (void)total;
      });
  progress.finish();
  std::printf("wrote '%s'\n", args.dst.c_str());
  return 0;
}

// Nearest-neighbour scaling of `img` into a cell_h x cell_w x channels block of `grid` at
// (top, left), with grey replicated to RGB when the grid is RGB. For display only.
void paste_scaled(const data::Image& img, data::Image& grid, int64_t top, int64_t left,
                  int64_t cell_h, int64_t cell_w) {
  for (int64_t y = 0; y < cell_h; ++y) {
    const int64_t sy = y * img.height / cell_h;
    for (int64_t x = 0; x < cell_w; ++x) {
      const int64_t sx = x * img.width / cell_w;
      const uint8_t* src = img.pixels.data() + (sy * img.width + sx) * img.channels;
      uint8_t* dst = grid.pixels.data() + ((top + y) * grid.width + left + x) * grid.channels;
      for (int64_t c = 0; c < grid.channels; ++c)
        dst[c] = src[img.channels == 1 ? 0 : c];
    }
  }
}

int inspect(const DataArgs& args) {
  const std::string kind = args.kind.empty() ? detect_kind(args.src) : args.kind;
  const auto source = open_source(kind, args.src, args.split, args.channels);
  const int64_t n = source->size();
  std::vector<int64_t> counts(size_t(source->num_classes()), 0);
  for (int64_t i = 0; i < n; ++i)
    counts[size_t(source->label(i))]++;

  // Sizes: every image is read (image folders decode each file); corrupt ones are listed.
  int64_t min_h = std::numeric_limits<int64_t>::max(), max_h = 0;
  int64_t min_w = std::numeric_limits<int64_t>::max(), max_w = 0;
  int64_t channels = 0;
  std::vector<std::string> corrupt;
  data::Image img;
  for (int64_t i = 0; i < n; ++i) {
    try {
      source->read(i, img);
    } catch (const data::DataError& e) {
      corrupt.push_back(e.what());
      continue;
    }
    min_h = std::min(min_h, img.height);
    max_h = std::max(max_h, img.height);
    min_w = std::min(min_w, img.width);
    max_w = std::max(max_w, img.width);
    channels = img.channels;
  }

  std::printf("%s: %s, %lld examples, %d classes\n", args.src.c_str(), kind.c_str(),
              static_cast<long long>(n), source->num_classes());
  if (corrupt.size() < size_t(n)) {
    std::printf("image size: height %lld..%lld, width %lld..%lld, %lld channel(s)\n",
                static_cast<long long>(min_h), static_cast<long long>(max_h),
                static_cast<long long>(min_w), static_cast<long long>(max_w),
                static_cast<long long>(channels));
  }
  const auto* folder = dynamic_cast<const data::ImageFolderSource*>(source.get());
  std::printf("class  count  name\n");
  for (size_t c = 0; c < counts.size(); ++c) {
    std::printf("%5zu  %5lld  %s\n", c, static_cast<long long>(counts[c]),
                folder ? folder->class_names()[c].c_str() : "");
  }
  if (!corrupt.empty()) {
    std::printf("%zu unreadable example(s):\n", corrupt.size());
    for (const std::string& e : corrupt)
      std::printf("  %s\n", e.c_str());
  }

  if (!args.grid.empty()) {
    if (args.grid_side <= 0) {
      throw std::runtime_error("--grid-side must be > 0, got " + std::to_string(args.grid_side));
    }
    if (corrupt.size() == size_t(n)) throw std::runtime_error("no readable image for --grid");
    // Evenly spaced examples, each scaled into a cell of the smallest image size (at most 64 px).
    const int64_t count = std::min(n, args.grid_side * args.grid_side);
    const int64_t cols = std::min(count, args.grid_side);
    const int64_t rows = (count + cols - 1) / cols;
    const int64_t cell_h = std::min<int64_t>(min_h, 64), cell_w = std::min<int64_t>(min_w, 64);
    data::Image grid;
    grid.height = rows * cell_h;
    grid.width = cols * cell_w;
    grid.channels = channels >= 3 ? 3 : 1;  // RGB, or grey (a 2-channel shard shows channel 0)
    grid.pixels.assign(size_t(grid.height * grid.width * grid.channels), 0);
    for (int64_t k = 0; k < count; ++k) {
      try {
        source->read(k * n / count, img);
      } catch (const data::DataError&) {
        continue;  // left black; already listed above
      }
      paste_scaled(img, grid, (k / cols) * cell_h, (k % cols) * cell_w, cell_h, cell_w);
    }
    data::write_png(args.grid, grid);
    std::printf("grid of %lld examples (%lld x %lld, %lld x %lld px) written to '%s'\n",
                static_cast<long long>(count), static_cast<long long>(rows),
                static_cast<long long>(cols), static_cast<long long>(grid.height),
                static_cast<long long>(grid.width), args.grid.c_str());
  }
  return corrupt.empty() ? 0 : 1;
}

}  // namespace

int run_data(const DataArgs& args) {
  if (args.command == "pack") return pack(args);
  if (args.command == "inspect") return inspect(args);
  throw std::runtime_error("unknown `vmoe data` command '" + args.command +
                           "', expected pack or inspect");
}

}  // namespace vmoe
