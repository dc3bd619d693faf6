// Per-example augmentation (zero-pad + random crop, horizontal flip) and normalisation from raw
// u8 pixels to floats. Random choices are pure functions of (seed, epoch, example index).
#pragma once
#include <array>
#include <cstdint>

namespace vmoe::data {

// out = (pixel / 255 - mean) / stddev, the same for every channel; the default maps to [-1, 1].
struct Normalization {
  float mean = 0.5f;
  float stddev = 0.5f;
};

struct AugmentOptions {
  bool random_flip = false;  // mirror left-right with probability 1/2
  int64_t crop_padding = 0;  // pad by p zero pixels on each side, crop back to H x W; 0 = off
};

// The random choices for one example. Crop offsets are into the padded image, in [0, 2p];
// p, p is the unshifted crop.
struct AugmentChoice {
  bool flip = false;
  int64_t crop_y = 0;
  int64_t crop_x = 0;
};

// Throws DataError unless mean is finite and stddev finite and > 0.
void validate_normalization(const Normalization& norm);

// [256] normalised value of each pixel value.
std::array<float, 256> normalization_table(const Normalization& norm);

AugmentChoice choose_augment(const AugmentOptions& options, uint64_t seed, int64_t epoch,
                             int64_t example);

// Writes one example: src [H, W, C] u8 -> dst [H, W, C] f32, cropped from the image padded by
// `crop_padding` zero pixels (choice.crop_y/x), then mirrored if choice.flip, then normalised
// through `table`.
void augment_example(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                     int64_t crop_padding, const AugmentChoice& choice,
                     const std::array<float, 256>& table, float* dst);

}  // namespace vmoe::data
