// Dispatch between the pad-crop path (model-sized inputs) and the crop + bilinear resize path.
#include "data/preprocess.h"

#include <string>

#include "data/checked_size.h"
#include "data/data_error.h"
#include "data/image_ops.h"

namespace vmoe::data {

void validate_preprocess(const PreprocessOptions& o) {
  if (o.height < 0 || o.width < 0 || (o.height == 0) != (o.width == 0)) {
    throw DataError("preprocess: image size must be both 0 (source size) or both > 0, got " +
                    std::to_string(o.height) + "x" + std::to_string(o.width));
  }
  if (o.eval_resize < 0) {
    throw DataError("preprocess: eval_resize must be >= 0, got " + std::to_string(o.eval_resize));
  }
  if (o.crop_padding < 0) {
    throw DataError("preprocess: crop_padding must be >= 0, got " + std::to_string(o.crop_padding));
  }
  if (o.crop_padding > 0 && (o.inception_crop || o.eval_resize > 0)) {
    throw DataError(
        "preprocess: crop_padding cannot be combined with inception_crop or "
        "eval_resize");
  }
  if (o.inception_crop && o.height == 0) {
    throw DataError("preprocess: inception_crop needs an output image size");
  }
  // Bounded so that sizes and crop ranges (2 * crop_padding + 1) computed from them cannot
  // overflow; no image is larger.
  check_at_most(o.height, kMaxImageSide, "preprocess", "image height");
  check_at_most(o.width, kMaxImageSide, "preprocess", "image width");
  check_at_most(o.eval_resize, kMaxImageSide, "preprocess", "eval_resize");
  check_at_most(o.crop_padding, kMaxImageSide, "preprocess", "crop_padding");
  validate_inception_crop(o.inception);
  validate_normalization(o.normalization);
}

int64_t preprocess_height(const PreprocessOptions& o, int64_t src_height) {
  return o.height > 0 ? o.height : src_height;
}

int64_t preprocess_width(const PreprocessOptions& o, int64_t src_width) {
  return o.width > 0 ? o.width : src_width;
}

void preprocess_example(const Image& src, const PreprocessOptions& o, uint64_t seed, int64_t epoch,
                        int64_t example, float* dst) {
  const int64_t h = preprocess_height(o, src.height);
  const int64_t w = preprocess_width(o, src.width);
  const AugmentChoice choice =
      choose_augment({o.random_flip, o.crop_padding}, seed, epoch, example);
  const bool same_size = !o.inception_crop && h == src.height && w == src.width;
  const CropBox box = o.inception_crop ? inception_crop_box(src.height, src.width, o.inception,
                                                            seed, epoch, example)
                                       : resize_small_center_box(src, o.eval_resize, h, w);
  // No resize (also an evaluation resize whose centre crop is the whole image): pixels go
  // through the normalisation table, so that an evaluation batch of images already at the
  // model's size equals data::eval_batch's bit for bit (`vmoe eval` and `vmoe predict` agree).
  if (same_size && box.y == 0 && box.x == 0 && box.height == h && box.width == w) {
    augment_example(src.pixels.data(), h, w, src.channels, o.crop_padding, choice,
                    normalization_table(o.normalization), dst);
    return;
  }
  resize_bilinear(src, box, h, w, dst);
  if (choice.flip) flip_horizontal(dst, h, w, src.channels);
  normalize_pixels(dst, h * w * src.channels, o.normalization.mean, o.normalization.stddev);
}

}  // namespace vmoe::data
