// Random resized crop: area and aspect draws from the counter hash, then placement.
#include "data/inception_crop.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "data/counter_hash.h"
#include "data/data_error.h"

namespace vmoe::data {
namespace {

constexpr auto kInceptionStream = static_cast<RandomStream>(0x494e43455054u);  // "INCEPT"

// Uniform in [0, 1) with 53 random bits; slot k of one (example, attempt).
double uniform01(uint64_t seed, int64_t epoch, int64_t example, int attempt, int k) {
  const uint64_t key =
      (static_cast<uint64_t>(example) << 8) | static_cast<uint64_t>(attempt * 4 + k);
  const uint64_t h = counter_hash(seed, kInceptionStream, static_cast<uint64_t>(epoch), key);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

}  // namespace

void validate_inception_crop(const InceptionCropOptions& o) {
  if (!(o.area_min > 0 && o.area_min <= o.area_max && o.area_max <= 1)) {
    throw DataError("inception crop area range must satisfy 0 < min <= max <= 1, got [" +
                    std::to_string(o.area_min) + ", " + std::to_string(o.area_max) + "]");
  }
  if (!(o.aspect_min > 0 && o.aspect_min <= o.aspect_max && std::isfinite(o.aspect_max))) {
    throw DataError("inception crop aspect range must satisfy 0 < min <= max, got [" +
                    std::to_string(o.aspect_min) + ", " + std::to_string(o.aspect_max) + "]");
  }
  if (o.attempts < 1 || o.attempts > 60) {
    throw DataError("inception crop attempts must be in [1, 60], got " +
                    std::to_string(o.attempts));
  }
}

CropBox inception_crop_box(int64_t image_height, int64_t image_width, const InceptionCropOptions& o,
                           uint64_t seed, int64_t epoch, int64_t example) {
  const double area = static_cast<double>(image_height) * static_cast<double>(image_width);
  const double log_lo = std::log(static_cast<double>(o.aspect_min));
  const double log_hi = std::log(static_cast<double>(o.aspect_max));
  for (int attempt = 0; attempt < o.attempts; ++attempt) {
    const double fraction =
        o.area_min + (o.area_max - o.area_min) * uniform01(seed, epoch, example, attempt, 0);
    const double aspect =
        std::exp(log_lo + (log_hi - log_lo) * uniform01(seed, epoch, example, attempt, 1));
    const auto w = static_cast<int64_t>(std::llround(std::sqrt(fraction * area * aspect)));
    const auto h = static_cast<int64_t>(std::llround(std::sqrt(fraction * area / aspect)));
    if (w < 1 || h < 1 || w > image_width || h > image_height) continue;
    const auto y = static_cast<int64_t>(uniform01(seed, epoch, example, attempt, 2) *
                                        static_cast<double>(image_height - h + 1));
    const auto x = static_cast<int64_t>(uniform01(seed, epoch, example, attempt, 3) *
                                        static_cast<double>(image_width - w + 1));
    return {y, x, h, w};
  }
  // Fallback: the whole image, narrowed to the allowed aspect range, centred.
  const double ratio = static_cast<double>(image_width) / static_cast<double>(image_height);
  int64_t h = image_height;
  int64_t w = image_width;
  if (ratio < o.aspect_min) {
    h = std::clamp<int64_t>(std::llround(static_cast<double>(w) / o.aspect_min), 1, image_height);
  } else if (ratio > o.aspect_max) {
    w = std::clamp<int64_t>(std::llround(static_cast<double>(h) * o.aspect_max), 1, image_width);
  }
  return {(image_height - h) / 2, (image_width - w) / 2, h, w};
}

}  // namespace vmoe::data
