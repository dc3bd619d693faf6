// An in-memory labelled image dataset as plain buffers (the caller wraps them into tensors),
// and loaders that build one from IDX files (MNIST / Fashion-MNIST).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vmoe::data {

struct ImageDataset {
  std::vector<uint8_t> images;  // [n, height, width, channels] row-major, raw pixels 0..255
  std::vector<int32_t> labels;  // [n] each in [0, num_classes)
  int64_t n = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int32_t num_classes = 0;
};

// Throws DataError unless the buffer sizes match the dims, every label is in
// [0, num_classes) and n > 0. `what` names the dataset in the message.
void validate_dataset(const ImageDataset& dataset, const std::string& what);

// Loads an IDX image file [N, H, W] and its IDX label file [N] (gzip or raw) as a 1-channel
// dataset. max_examples > 0 keeps the first max_examples; num_classes > 0 fixes the class
// count (labels must be below it), 0 takes max label + 1.
ImageDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path,
                              int64_t max_examples = 0, int32_t num_classes = 0);

enum class Split : uint8_t { train, test };

struct IdxSplitFiles {
  std::string images;
  std::string labels;
};

// The standard MNIST / Fashion-MNIST file names of `split` in `dir`
// ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", ...); each name falls back to
// its uncompressed form when only that exists.
IdxSplitFiles idx_split_files(const std::string& dir, Split split);

// load_idx_dataset on idx_split_files(dir, split), with 10 classes.
ImageDataset load_fashion_mnist_split(const std::string& dir, Split split,
                                      int64_t max_examples = 0);

}  // namespace vmoe::data
