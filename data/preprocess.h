// The per-example transform of the threaded loader: decoded u8 image -> model-sized floats.
// Training: inception crop (or pad + random crop) and flip; evaluation: resize the shorter side
// and take the centre crop. Random choices are pure functions of (seed, epoch, example).
#pragma once
#include <cstdint>

#include "data/augment.h"
#include "data/image_source.h"
#include "data/inception_crop.h"

namespace vmoe::data {

struct PreprocessOptions {
  int64_t height = 0;  // output size; 0 and 0 = the source size (every image must have it)
  int64_t width = 0;
  bool inception_crop = false;  // random resized crop to height x width (training)
  InceptionCropOptions inception;
  // Without inception crop, when the image is not already height x width: resize its shorter
  // side to eval_resize and centre-crop (0: resize the whole image to height x width).
  int64_t eval_resize = 0;
  bool random_flip = false;  // mirror left-right with probability 1/2
  int64_t crop_padding = 0;  // zero-pad + random crop; only without resizing
  Normalization normalization;
};

// Throws DataError on inconsistent options (negative sizes, crop_padding with resizing, bad
// inception ranges or normalisation).
void validate_preprocess(const PreprocessOptions& options);

// Output height and width for a source image of src_height x src_width.
int64_t preprocess_height(const PreprocessOptions& options, int64_t src_height);
int64_t preprocess_width(const PreprocessOptions& options, int64_t src_width);

// dst [height, width, src.channels] f32 normalised. Without resizing and inception crop the
// result equals augment_example for the same (seed, epoch, example).
void preprocess_example(const Image& src, const PreprocessOptions& options, uint64_t seed,
                        int64_t epoch, int64_t example, float* dst);

}  // namespace vmoe::data
