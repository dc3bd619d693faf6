// Crop, flip and normalisation of one example, fused into a single pass over its pixels.
#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "data/counter_hash.h"
#include "data/data_error.h"

namespace vmoe::data {

void validate_normalization(const Normalization& norm) {
  if (!std::isfinite(norm.mean)) {
    throw DataError("normalization mean must be finite, got " + std::to_string(norm.mean));
  }
  if (!std::isfinite(norm.stddev) || norm.stddev <= 0) {
    throw DataError("normalization stddev must be finite and > 0, got " +
                    std::to_string(norm.stddev));
  }
}

std::array<float, 256> normalization_table(const Normalization& norm) {
  std::array<float, 256> table{};
  for (int v = 0; v < 256; ++v) {
    table[static_cast<size_t>(v)] = (static_cast<float>(v) / 255.0f - norm.mean) / norm.stddev;
  }
  return table;
}

AugmentChoice choose_augment(const AugmentOptions& options, uint64_t seed, int64_t epoch,
                             int64_t example) {
  AugmentChoice choice;
  const auto e = static_cast<uint64_t>(epoch);
  const auto i = static_cast<uint64_t>(example);
  if (options.random_flip) choice.flip = (counter_hash(seed, RandomStream::flip, e, i) >> 63) != 0;
  if (options.crop_padding > 0) {
    const auto range = static_cast<uint64_t>(2 * options.crop_padding + 1);
    // Two independent draws from one stream: y uses even, x odd slots of the example index.
    choice.crop_y = static_cast<int64_t>(uniform_below(seed, RandomStream::crop, e, 2 * i, range));
    choice.crop_x =
        static_cast<int64_t>(uniform_below(seed, RandomStream::crop, e, 2 * i + 1, range));
  }
  return choice;
}

void augment_example(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                     int64_t crop_padding, const AugmentChoice& choice,
                     const std::array<float, 256>& table, float* dst) {
  const float zero = table[0];
  const int64_t shift_y = choice.crop_y - crop_padding;
  const int64_t shift_x = choice.crop_x - crop_padding;
  const int64_t row = width * channels;
  for (int64_t y = 0; y < height; ++y) {
    float* out = dst + y * row;
    const int64_t sy = y + shift_y;
    if (sy < 0 || sy >= height) {
      std::fill_n(out, row, zero);
      continue;
    }
    const uint8_t* in = src + sy * row;
    if (!choice.flip && shift_x == 0) {
      for (int64_t k = 0; k < row; ++k) {
        out[k] = table[in[k]];
      }
      continue;
    }
    for (int64_t x = 0; x < width; ++x) {
      const int64_t sx = (choice.flip ? width - 1 - x : x) + shift_x;
      float* o = out + x * channels;
      if (sx < 0 || sx >= width) {
        std::fill_n(o, channels, zero);
      } else {
        const uint8_t* p = in + sx * channels;
        for (int64_t c = 0; c < channels; ++c) {
          o[c] = table[p[c]];
        }
      }
    }
  }
}

}  // namespace vmoe::data
