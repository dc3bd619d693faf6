// One batch as plain buffers, ready to be wrapped into tensors by the caller.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe::data {

struct Batch {
  std::vector<float> images;     // [batch_size, height, width, channels] normalised
  std::vector<int32_t> labels;   // [batch_size]
  std::vector<int64_t> indices;  // [batch_size] dataset index of each example
  // [batch_size, num_classes] soft targets when mixup is on; empty means one-hot `labels`.
  std::vector<float> targets;
  int64_t batch_size = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
};

}  // namespace vmoe::data
