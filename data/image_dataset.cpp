// IDX image + label files joined into an ImageDataset, with the consistency checks between them.
#include "data/image_dataset.h"

#include <algorithm>
#include <filesystem>

#include "data/checked_size.h"
#include "data/data_error.h"
#include "data/idx_reader.h"

namespace vmoe::data {

void validate_dataset(const ImageDataset& dataset, const std::string& what) {
  const auto& d = dataset;
  if (d.n <= 0) throw DataError(what + ": holds no examples");
  if (d.height <= 0 || d.width <= 0 || d.channels <= 0) {
    throw DataError(what + ": image shape " + std::to_string(d.height) + "x" +
                    std::to_string(d.width) + "x" + std::to_string(d.channels) +
                    ", expected all dims > 0");
  }
  const auto pixels = static_cast<size_t>(
      checked_product({d.n, d.height, d.width, d.channels}, what + ": n*H*W*C"));
  if (d.images.size() != pixels) {
    throw DataError(what + ": images buffer holds " + std::to_string(d.images.size()) +
                    " bytes, expected n*H*W*C = " + std::to_string(pixels));
  }
  if (d.labels.size() != static_cast<size_t>(d.n)) {
    throw DataError(what + ": labels buffer holds " + std::to_string(d.labels.size()) +
                    " labels, expected n = " + std::to_string(d.n));
  }
  if (d.num_classes <= 0) {
    throw DataError(what + ": num_classes must be > 0, got " + std::to_string(d.num_classes));
  }
  for (int64_t i = 0; i < d.n; ++i) {
    const int32_t label = d.labels[static_cast<size_t>(i)];
    if (label < 0 || label >= d.num_classes) {
      throw DataError(what + ": label " + std::to_string(label) + " of example " +
                      std::to_string(i) + " is outside [0, " + std::to_string(d.num_classes) + ")");
    }
  }
}

ImageDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                              int64_t max_examples, int32_t num_classes) {
  const std::string what = "IDX dataset ('" + images_path + "', '" + labels_path + "')";
  if (num_classes < 0) {
    throw DataError(what + ": num_classes must be >= 0 (0 = max label + 1), got " +
                    std::to_string(num_classes));
  }
  // Read both files whole before comparing counts, so the mismatch message gives the true sizes.
  IdxImages images = read_idx_images(images_path);
  IdxLabels labels = read_idx_labels(labels_path);
  if (images.n != labels.n) {
    throw DataError(what + ": '" + images_path + "' holds " + std::to_string(images.n) +
                    " images but '" + labels_path + "' holds " + std::to_string(labels.n) +
                    " labels");
  }
  if (max_examples < 0) {
    throw DataError(what + ": max_examples must be >= 0 (0 = all), got " +
                    std::to_string(max_examples));
  }
  const int64_t n = max_examples == 0 ? images.n : std::min(images.n, max_examples);

  ImageDataset dataset;
  dataset.n = n;
  dataset.height = images.height;
  dataset.width = images.width;
  dataset.channels = 1;
  images.pixels.resize(static_cast<size_t>(n * images.height * images.width));
  dataset.images = std::move(images.pixels);
  dataset.labels.assign(labels.labels.begin(), labels.labels.begin() + n);
  if (num_classes == 0) {
    num_classes = n == 0 ? 0 : *std::max_element(dataset.labels.begin(), dataset.labels.end()) + 1;
  }
  dataset.num_classes = num_classes;
  validate_dataset(dataset, what);
  return dataset;
}

IdxSplitFiles idx_split_files(const std::string& dir, Split split) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const auto pick = [&](const std::string& stem) {
    const std::filesystem::path raw = std::filesystem::path(dir) / stem;
    const std::filesystem::path gz = raw.string() + ".gz";
    std::error_code ec;
    // Prefer .gz; the error for a missing file then names the name the dataset ships under.
    if (!std::filesystem::exists(gz, ec) && std::filesystem::exists(raw, ec)) return raw.string();
    return gz.string();
  };
  return {pick(prefix + "-images-idx3-ubyte"), pick(prefix + "-labels-idx1-ubyte")};
}

ImageDataset load_fashion_mnist_split(const std::string& dir, Split split, int64_t max_examples) {
  const IdxSplitFiles files = idx_split_files(dir, split);
  return load_idx_dataset(files.images, files.labels, max_examples, 10);
}

}  // namespace vmoe::data
