// Readers for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw: u8 images
// [N, H, W] (magic 0x00000803) and u8 labels [N] (magic 0x00000801). The whole file is
// validated; any problem throws DataError naming the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vmoe::data {

struct IdxImages {
  std::vector<uint8_t> pixels;  // [n, height, width] row-major
  int64_t n = 0;
  int64_t height = 0;
  int64_t width = 0;
};

struct IdxLabels {
  std::vector<uint8_t> labels;  // [n]
  int64_t n = 0;
};

// max_examples > 0 keeps only the first max_examples items (the rest of the file is still
// read and checked); 0 keeps all.
IdxImages read_idx_images(const std::string& path, int64_t max_examples = 0);
IdxLabels read_idx_labels(const std::string& path, int64_t max_examples = 0);

}  // namespace vmoe::data
