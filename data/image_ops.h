// Geometric image operations on decoded u8 images: crop boxes, bilinear resize of a box to a
// target size, centre crop for evaluation, horizontal mirror and normalisation into floats.
#pragma once
#include <array>
#include <cstdint>

#include "data/image_source.h"

namespace vmoe::data {

// A rectangle of an image in pixels: rows [y, y + height), columns [x, x + width).
struct CropBox {
  int64_t y = 0;
  int64_t x = 0;
  int64_t height = 0;
  int64_t width = 0;
  bool operator==(const CropBox&) const = default;
};

// The whole image as a box.
CropBox full_box(const Image& image);

// The box of `height` x `width` centred in `image` (offsets rounded down). Throws DataError if
// it does not fit.
CropBox center_box(const Image& image, int64_t height, int64_t width);

// The centred box that, resized to out_height x out_width, gives the same result as resizing
// the shorter side of `image` to `resize_size` (keeping the aspect ratio) and then taking the
// centre out_height x out_width crop: the evaluation transform "resize_small + central_crop".
// resize_size 0 means the whole image is resized to the target (no crop).
CropBox resize_small_center_box(const Image& image, int64_t resize_size, int64_t out_height,
                                int64_t out_width);

// Bilinear resize of `box` of `src` to out_height x out_width, half-pixel centres
// (source coordinate = (dst + 0.5) * scale - 0.5, clamped to the box edges), like
// TF resize(antialias=False) and PIL without antialiasing.
// dst [out_height, out_width, channels] f32, values still in pixel units 0..255.
void resize_bilinear(const Image& src, const CropBox& box, int64_t out_height, int64_t out_width,
                     float* dst);

// Mirrors [height, width, channels] in place left-right.
void flip_horizontal(float* image, int64_t height, int64_t width, int64_t channels);

// x -> (x / 255 - mean) / stddev for `count` values in pixel units; mean = stddev = 0.5 maps
// 0..255 to [-1, 1].
void normalize_pixels(float* values, int64_t count, float mean, float stddev);

}  // namespace vmoe::data
