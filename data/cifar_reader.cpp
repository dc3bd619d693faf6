// CIFAR binary files -> ImageDataset (CHW records converted to HWC).
#include "data/cifar_reader.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "data/data_error.h"

namespace vmoe::data {
namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kChannels = 3;
constexpr int64_t kPixels = kSide * kSide * kChannels;  // 3072 bytes per image
// The official files hold 10000 (CIFAR-10 batches, test files) or 50000 (CIFAR-100 train)
// records; a file is refused above this many, before it is read.
constexpr int64_t kMaxRecordsPerFile = int64_t{1} << 17;

// The whole file, after checking that its size is that of 1 .. kMaxRecordsPerFile records.
std::vector<uint8_t> read_whole_file(const std::string& path, int64_t record, int64_t label_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw DataError("CIFAR file '" + path + "' does not exist or is not a regular file");
  }
  const uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw DataError("cannot stat CIFAR file '" + path + "': " + ec.message());
  const auto size = static_cast<int64_t>(std::min<uintmax_t>(file_size, INT64_MAX));
  if (size == 0 || size % record != 0) {
    throw DataError("CIFAR file '" + path + "' holds " + std::to_string(size) +
                    " bytes, expected a positive multiple of the record size " +
                    std::to_string(record) + " (" + std::to_string(label_bytes) +
                    " label byte(s) + 3072 pixels)");
  }
  if (size / record > kMaxRecordsPerFile) {
    throw DataError("CIFAR file '" + path + "' holds " + std::to_string(size / record) +
                    " records, more than the " + std::to_string(kMaxRecordsPerFile) +
                    " this reader accepts per file (official files hold 10000 or 50000)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open CIFAR file '" + path + "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (in.gcount() != size || in.peek() != std::ifstream::traits_type::eof()) {
    throw DataError("error reading CIFAR file '" + path + "': expected " + std::to_string(size) +
                    " bytes, read " + std::to_string(in.gcount()) + " (did it change?)");
  }
  return bytes;
}

// Appends the records of `path` to `out`; `label_bytes` label bytes precede each image and the
// last of them is the label.
void append_records(const std::string& path, int64_t label_bytes, ImageDataset& out) {
  const int64_t record = label_bytes + kPixels;
  const std::vector<uint8_t> bytes = read_whole_file(path, record, label_bytes);
  const int64_t n = int64_t(bytes.size()) / record;  // <= kMaxRecordsPerFile
  const size_t first = out.images.size();
  out.images.resize(first + size_t(n * kPixels));
  out.labels.reserve(out.labels.size() + size_t(n));
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* rec = bytes.data() + r * record;
    out.labels.push_back(int32_t(rec[label_bytes - 1]));
    const uint8_t* chw = rec + label_bytes;                  // [3, 32, 32]
    uint8_t* hwc = out.images.data() + first + r * kPixels;  // [32, 32, 3]
    for (int64_t c = 0; c < kChannels; ++c) {
      for (int64_t p = 0; p < kSide * kSide; ++p)
        hwc[p * kChannels + c] = chw[c * kSide * kSide + p];
    }
  }
  out.n += n;
}

ImageDataset load_files(const std::vector<std::string>& files, int64_t label_bytes,
                        int32_t num_classes, const std::string& what) {
  ImageDataset ds;
  ds.height = kSide;
  ds.width = kSide;
  ds.channels = kChannels;
  ds.num_classes = num_classes;
  for (const std::string& f : files)
    append_records(f, label_bytes, ds);
  validate_dataset(ds, what);
  return ds;
}

}  // namespace

ImageDataset load_cifar10(const std::string& dir, Split split) {
  const std::filesystem::path d = dir;
  std::vector<std::string> files;
  if (split == Split::train) {
    for (int b = 1; b <= 5; ++b)
      files.push_back(d / ("data_batch_" + std::to_string(b) + ".bin"));
  } else {
    files.push_back(d / "test_batch.bin");
  }
  return load_files(files, 1, 10, "CIFAR-10 in '" + dir + "'");
}

ImageDataset load_cifar100(const std::string& dir, Split split) {
  const std::filesystem::path d = dir;
  const std::string file = d / (split == Split::train ? "train.bin" : "test.bin");
  return load_files({file}, 2, 100, "CIFAR-100 in '" + dir + "'");
}

}  // namespace vmoe::data
