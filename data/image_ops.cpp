// Crop boxes, bilinear resize, flip and normalisation.
#include "data/image_ops.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "data/data_error.h"

namespace vmoe::data {

CropBox full_box(const Image& image) {
  return {0, 0, image.height, image.width};
}

CropBox center_box(const Image& image, int64_t height, int64_t width) {
  if (height <= 0 || width <= 0 || height > image.height || width > image.width) {
    throw DataError("center crop " + std::to_string(height) + "x" + std::to_string(width) +
                    " does not fit an image of " + std::to_string(image.height) + "x" +
                    std::to_string(image.width));
  }
  return {(image.height - height) / 2, (image.width - width) / 2, height, width};
}

CropBox resize_small_center_box(const Image& image, int64_t resize_size, int64_t out_height,
                                int64_t out_width) {
  if (resize_size == 0) return full_box(image);
  if (resize_size < std::max(out_height, out_width)) {
    throw DataError("eval resize size " + std::to_string(resize_size) +
                    " is smaller than the crop " + std::to_string(out_height) + "x" +
                    std::to_string(out_width));
  }
  // Scale from the resized image back to the source; the crop maps to a centred source box.
  const double scale =
      static_cast<double>(std::min(image.height, image.width)) / static_cast<double>(resize_size);
  const int64_t h = std::clamp<int64_t>(std::llround(out_height * scale), 1, image.height);
  const int64_t w = std::clamp<int64_t>(std::llround(out_width * scale), 1, image.width);
  return center_box(image, h, w);
}

namespace {

// For each output coordinate: the two source coordinates (inside [begin, begin + size)) and
// the weight of the second.
struct Taps {
  std::vector<int64_t> lo, hi;
  std::vector<float> frac;
};

Taps make_taps(int64_t begin, int64_t size, int64_t out) {
  Taps t;
  t.lo.resize(size_t(out));
  t.hi.resize(size_t(out));
  t.frac.resize(size_t(out));
  const double scale = static_cast<double>(size) / static_cast<double>(out);
  for (int64_t i = 0; i < out; ++i) {
    const double s = std::clamp((static_cast<double>(i) + 0.5) * scale - 0.5, 0.0,
                                static_cast<double>(size - 1));
    const auto lo = static_cast<int64_t>(std::floor(s));
    t.lo[size_t(i)] = begin + lo;
    t.hi[size_t(i)] = begin + std::min(lo + 1, size - 1);
    t.frac[size_t(i)] = static_cast<float>(s - static_cast<double>(lo));
  }
  return t;
}

}  // namespace

void resize_bilinear(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width,
                     float* dst) {
  if (box.height <= 0 || box.width <= 0 || box.y < 0 || box.x < 0 ||
      box.y + box.height > src.height || box.x + box.width > src.width) {
    throw DataError("resize: crop box " + std::to_string(box.height) + "x" +
                    std::to_string(box.width) + " at (" + std::to_string(box.y) + ", " +
                    std::to_string(box.x) + ") is outside the " + std::to_string(src.height) + "x" +
                    std::to_string(src.width) + " image");
  }
  if (out_height <= 0 || out_width <= 0) {
    throw DataError("resize: output size must be > 0, got " + std::to_string(out_height) + "x" +
                    std::to_string(out_width));
  }
  const int64_t c = src.channels;
  const Taps ty = make_taps(box.y, box.height, out_height);
  const Taps tx = make_taps(box.x, box.width, out_width);
  const uint8_t* pixels = src.pixels.data();
  const int64_t row = src.width * c;
  for (int64_t y = 0; y < out_height; ++y) {
    const uint8_t* r0 = pixels + ty.lo[size_t(y)] * row;
    const uint8_t* r1 = pixels + ty.hi[size_t(y)] * row;
    const float fy = ty.frac[size_t(y)];
    float* out = dst + y * out_width * c;
    for (int64_t x = 0; x < out_width; ++x) {
      const int64_t x0 = tx.lo[size_t(x)] * c;
      const int64_t x1 = tx.hi[size_t(x)] * c;
      const float fx = tx.frac[size_t(x)];
      for (int64_t k = 0; k < c; ++k) {
        const float top =
            static_cast<float>(r0[x0 + k]) + fx * static_cast<float>(r0[x1 + k] - r0[x0 + k]);
        const float bottom =
            static_cast<float>(r1[x0 + k]) + fx * static_cast<float>(r1[x1 + k] - r1[x0 + k]);
        out[x * c + k] = top + fy * (bottom - top);
      }
    }
  }
}

void flip_horizontal(float* image, int64_t height, int64_t width, int64_t channels) {
  for (int64_t y = 0; y < height; ++y) {
    float* row = image + y * width * channels;
    for (int64_t x = 0; x < width / 2; ++x) {
      std::swap_ranges(row + x * channels, row + (x + 1) * channels,
                       row + (width - 1 - x) * channels);
    }
  }
}

void normalize_pixels(float* values, int64_t count, float mean, float stddev) {
  const float a = 1.0f / (255.0f * stddev);
  const float b = -mean / stddev;
  for (int64_t i = 0; i < count; ++i)
    values[i] = values[i] * a + b;
}

}  // namespace vmoe::data
