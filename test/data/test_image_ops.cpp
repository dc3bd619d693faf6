// Tests of augmentation: bilinear resize against hand-computed values, centre crops, the
// inception crop's area/aspect bounds and determinism, preprocessing ranges, flip and mixup.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <vector>

#include "data/data_error.h"
#include "data/image_ops.h"
#include "data/inception_crop.h"
#include "data/mixup.h"
#include "data/preprocess.h"

using namespace vmoe::data;

namespace {

Image make_image(int64_t h, int64_t w, int64_t c, std::vector<uint8_t> pixels) {
  Image im;
  im.height = h;
  im.width = w;
  im.channels = c;
  im.pixels = std::move(pixels);
  return im;
}

// Pixel value (7 y + 3 x + c) mod 256, easy to recognise.
Image pattern_image(int64_t h, int64_t w, int64_t c) {
  std::vector<uint8_t> px(size_t(h * w * c));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t k = 0; k < c; ++k)
        px[size_t((y * w + x) * c + k)] = uint8_t((7 * y + 3 * x + k) % 256);
  return make_image(h, w, c, std::move(px));
}

}  // namespace

TEST_CASE("image_ops: bilinear 2x2 -> 3x3 matches hand-computed values", "[data][image_ops]") {
  // Half-pixel centres: output 0 -> source -1/6 (clamped to 0), 1 -> 0.5, 2 -> 7/6 (clamped 1).
  const Image im = make_image(2, 2, 1, {0, 30, 60, 90});
  std::vector<float> out(9);
  resize_bilinear(im, full_box(im), 3, 3, out.data());
  const std::vector<float> expected = {0, 15, 30, 30, 45, 60, 60, 75, 90};
  for (size_t i = 0; i < 9; ++i)
    CHECK(out[i] == Approx(expected[i]));
}

TEST_CASE("image_ops: bilinear downscale 4x1 -> 2x1 averages pairs, identity size copies",
          "[data][image_ops]") {
  // 4 -> 2: output 0 -> source 0.5, output 1 -> source 2.5.
  const Image im = make_image(1, 4, 1, {0, 10, 20, 40});
  std::vector<float> out(2);
  resize_bilinear(im, full_box(im), 1, 2, out.data());
  CHECK(out[0] == Approx(5));
  CHECK(out[1] == Approx(30));
  const Image p = pattern_image(5, 6, 3);
  std::vector<float> same(5 * 6 * 3);
  resize_bilinear(p, full_box(p), 5, 6, same.data());
  for (size_t i = 0; i < same.size(); ++i)
    REQUIRE(same[i] == float(p.pixels[i]));
}

TEST_CASE("image_ops: resize of a box reads only that box", "[data][image_ops]") {
  const Image p = pattern_image(8, 8, 1);
  std::vector<float> out(4);
  resize_bilinear(p, CropBox{3, 2, 2, 2}, 2, 2, out.data());
  CHECK(out[0] == float(7 * 3 + 3 * 2));
  CHECK(out[1] == float(7 * 3 + 3 * 3));
  CHECK(out[2] == float(7 * 4 + 3 * 2));
  CHECK(out[3] == float(7 * 4 + 3 * 3));
  CHECK_THROWS_AS(resize_bilinear(p, CropBox{7, 0, 2, 2}, 2, 2, out.data()), DataError);
}

TEST_CASE("image_ops: centre crop and resize-small box", "[data][image_ops]") {
  const Image im = pattern_image(10, 20, 1);
  CHECK(center_box(im, 4, 6) == CropBox{3, 7, 4, 6});
  CHECK_THROWS_AS(center_box(im, 11, 4), DataError);
  // Shorter side 10 -> 5 (scale 2): a 4x4 crop of the resized image is 8x8 in the source.
  CHECK(resize_small_center_box(im, 5, 4, 4) == CropBox{1, 6, 8, 8});
  CHECK(resize_small_center_box(im, 0, 4, 4) == full_box(im));
  CHECK_THROWS_AS(resize_small_center_box(im, 3, 4, 4), DataError);
}

TEST_CASE("image_ops: flip mirrors columns, normalisation maps 0..255 to -1..1",
          "[data][image_ops]") {
  std::vector<float> v = {1, 2, 3, 4, 5, 6};  // [1, 3, 2]
  flip_horizontal(v.data(), 1, 3, 2);
  CHECK(v == std::vector<float>{5, 6, 3, 4, 1, 2});
  std::vector<float> p = {0, 127.5f, 255};
  normalize_pixels(p.data(), 3, 0.5f, 0.5f);
  CHECK(p[0] == Approx(-1));
  CHECK(p[1] == Approx(0).margin(1e-6));
  CHECK(p[2] == Approx(1));
}

TEST_CASE("inception crop: area and aspect within bounds over many draws, deterministic",
          "[data][image_ops]") {
  InceptionCropOptions o;
  const int64_t H = 256, W = 320;
  int fallbacks = 0;
  double min_frac = 1, max_frac = 0;
  std::set<int64_t> xs;
  for (int64_t i = 0; i < 4000; ++i) {
    const CropBox b = inception_crop_box(H, W, o, 7, 3, i);
    REQUIRE(b.y >= 0);
    REQUIRE(b.x >= 0);
    REQUIRE(b.y + b.height <= H);
    REQUIRE(b.x + b.width <= W);
    REQUIRE(b == inception_crop_box(H, W, o, 7, 3, i));
    const double frac = double(b.height * b.width) / double(H * W);
    const double aspect = double(b.width) / double(b.height);
    if (b == CropBox{0, 0, H, W} || frac > 0.99) {
      ++fallbacks;
      continue;
    }
    // Sides are rounded, so allow a pixel's worth of slack.
    REQUIRE(frac >= 0.08 * 0.97);
    REQUIRE(frac <= 1.0);
    REQUIRE(aspect >= 0.75 * 0.97);
    REQUIRE(aspect <= 4.0 / 3.0 * 1.03);
    min_frac = std::min(min_frac, frac);
    max_frac = std::max(max_frac, frac);
    xs.insert(b.x);
  }
  // The draws cover the range and positions vary.
  CHECK(min_frac < 0.1);
  CHECK(max_frac > 0.9);
  CHECK(xs.size() > 50);
  CHECK(fallbacks < 200);
  // Other seed or epoch: other boxes.
  int differ = 0;
  for (int64_t i = 0; i < 100; ++i) {
    differ += inception_crop_box(H, W, o, 8, 3, i) != inception_crop_box(H, W, o, 7, 3, i);
    differ += inception_crop_box(H, W, o, 7, 4, i) != inception_crop_box(H, W, o, 7, 3, i);
  }
  CHECK(differ > 180);
}

TEST_CASE("inception crop: fallback is a centred crop with clamped aspect", "[data][image_ops]") {
  InceptionCropOptions o;
  o.area_min = o.area_max = 1.0f;  // only an aspect of exactly H/W could fit
  // 10 x 100: no 3/4..4/3 box of the full area fits -> centre box 10 x round(10 * 4/3) = 13.
  const CropBox b = inception_crop_box(10, 100, o, 1, 0, 0);
  CHECK(b == CropBox{0, 43, 10, 13});
  o.area_min = 0.5f;
  o.area_max = 0.1f;
  CHECK_THROWS_AS(validate_inception_crop(o), DataError);
}

TEST_CASE("preprocess: inception crop output shape, range -1..1, determinism, flip",
          "[data][image_ops]") {
  const Image im = pattern_image(40, 50, 3);
  PreprocessOptions o;
  o.height = o.width = 16;
  o.inception_crop = true;
  o.random_flip = true;
  validate_preprocess(o);
  std::vector<float> a(16 * 16 * 3), b(a.size());
  int flipped_or_different = 0;
  for (int64_t i = 0; i < 50; ++i) {
    preprocess_example(im, o, 5, 0, i, a.data());
    preprocess_example(im, o, 5, 0, i, b.data());
    REQUIRE(a == b);
    for (float v : a)
      REQUIRE((v >= -1.0f && v <= 1.0f));
    preprocess_example(im, o, 6, 0, i, b.data());
    flipped_or_different += a != b;
  }
  CHECK(flipped_or_different > 40);
  // Evaluation: resize shorter side to 20 and centre-crop 16: deterministic, no randomness.
  PreprocessOptions e;
  e.height = e.width = 16;
  e.eval_resize = 20;
  preprocess_example(im, e, 1, 0, 0, a.data());
  preprocess_example(im, e, 2, 9, 3, b.data());
  CHECK(a == b);
  PreprocessOptions bad = o;
  bad.crop_padding = 2;
  CHECK_THROWS_AS(validate_preprocess(bad), DataError);
}

TEST_CASE("preprocess: an evaluation resize to the image's own size is exact table lookups",
          "[data][image_ops]") {
  // `vmoe eval` (preprocess_example) and `vmoe predict` (eval_batch) must feed the model the same
  // bits for images already at the model's size.
  const Image im = pattern_image(12, 12, 3);
  PreprocessOptions e;
  e.height = e.width = 12;
  e.eval_resize = 12;
  e.normalization = {0.3f, 0.7f};
  std::vector<float> out(12 * 12 * 3);
  preprocess_example(im, e, 0, 0, 0, out.data());
  const auto table = normalization_table(e.normalization);
  for (size_t i = 0; i < out.size(); ++i)
    REQUIRE(out[i] == table[im.pixels[i]]);
}

TEST_CASE("mixup: convex combination of pairs, targets sum to 1, deterministic",
          "[data][image_ops]") {
  Batch batch;
  batch.batch_size = 4;
  batch.height = 1;
  batch.width = 2;
  batch.channels = 1;
  batch.images = {0, 1, 10, 11, 20, 21, 30, 31};
  batch.labels = {0, 1, 2, 1};
  const Batch original = batch;
  mixup_batch(batch, 3, 0.4f, 9, 2, 0);
  REQUIRE(batch.targets.size() == 12);
  for (int64_t pair = 0; pair < 2; ++pair) {
    const float lam = mixup_lambda(0.4f, 9, 2, pair);
    REQUIRE(lam >= 0.0f);
    REQUIRE(lam <= 1.0f);
    const size_t a = size_t(2 * pair), b = a + 1;
    for (size_t p = 0; p < 2; ++p) {
      CHECK(batch.images[a * 2 + p] ==
            Approx(lam * original.images[a * 2 + p] + (1 - lam) * original.images[b * 2 + p]));
      CHECK(batch.images[b * 2 + p] ==
            Approx(lam * original.images[b * 2 + p] + (1 - lam) * original.images[a * 2 + p]));
    }
  }
  for (size_t k = 0; k < 4; ++k) {
    float sum = 0;
    for (size_t c = 0; c < 3; ++c)
      sum += batch.targets[k * 3 + c];
    CHECK(sum == Approx(1));
  }
  const float lam0 = mixup_lambda(0.4f, 9, 2, 0);
  CHECK(batch.targets[0] == Approx(lam0));      // example 0: label 0 weight lam
  CHECK(batch.targets[1] == Approx(1 - lam0));  // partner label 1
  // Starting at an odd slot: example 0's partner is outside the batch, it stays unmixed.
  Batch odd = original;
  mixup_batch(odd, 3, 0.4f, 9, 2, 1);
  CHECK(odd.images[0] == original.images[0]);
  CHECK(odd.targets[0] == 1.0f);
  // Beta(alpha, alpha) draws spread over (0, 1) with mean near 1/2.
  double mean = 0;
  for (int64_t p = 0; p < 2000; ++p)
    mean += mixup_lambda(1.0f, 3, 0, p);
  CHECK(mean / 2000 == Approx(0.5).margin(0.03));
}
