// Inception crop (random resized crop): the random box of an image that training resizes to
// the model size. A pure function of (seed, epoch, example), so it does not depend on threads,
// batch split or rank count.
#pragma once
#include <cstdint>

#include "data/image_ops.h"

namespace vmoe::data {

struct InceptionCropOptions {
  float area_min = 0.08f;  // fraction of the image area, uniform in [area_min, area_max]
  float area_max = 1.0f;
  float aspect_min = 3.0f / 4.0f;  // width / height, log-uniform in [aspect_min, aspect_max]
  float aspect_max = 4.0f / 3.0f;
  int attempts = 10;  // draws before the centre-crop fallback
};

// Throws DataError unless 0 < area_min <= area_max <= 1, 0 < aspect_min <= aspect_max and
// attempts >= 1.
void validate_inception_crop(const InceptionCropOptions& options);

// Draws (area fraction, aspect) up to `attempts` times; the first box of that area and aspect
// (sides rounded) that fits the image is placed uniformly at random. If none fits: the largest
// centred box whose aspect is clamped to [aspect_min, aspect_max].
CropBox inception_crop_box(int64_t image_height, int64_t image_width,
                           const InceptionCropOptions& options, uint64_t seed, int64_t epoch,
                           int64_t example);

}  // namespace vmoe::data
