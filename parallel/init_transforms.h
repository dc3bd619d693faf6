// The value transformations of initialisation rules (parallel/init_rules.h) as pure functions
// on row-major arrays of doubles (f32 and f64 values convert to double and back exactly), so
// each can be tested alone on small hand-made tensors.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe {

// `x` repeated `times` times along a new leading axis: [S...] -> [times, S...] (a dense MLP
// kernel [D, H] -> identical experts [E, D, H]).
std::vector<double> tile_leading(const std::vector<double>& x, int64_t times);

// Concatenation of equally shaped arrays along a new leading axis: n x [S...] -> [n, S...].
std::vector<double> stack_leading(const std::vector<std::vector<double>>& xs);

// Bilinear resize of an image [in_h, in_w, channels] to [out_h, out_w, channels] as
// jax.image.resize(method="bilinear") computes it (scale_and_translate with antialiasing):
// half-pixel centres (align_corners=False: output pixel i samples input coordinate
// (i + 0.5) * in / out - 0.5), a triangle kernel widened by in / out when shrinking, weights
// renormalised at the borders (which equals clamping to the edge pixel when enlarging).
std::vector<double> resize_bilinear(const std::vector<double>& x, int64_t in_h, int64_t in_w,
                                    int64_t channels, int64_t out_h, int64_t out_w);

// How the tokens of a ViT position embedding [1, tokens, D] are laid out: a class token row
// first when the model reads the class token (model.classifier TOKEN), then a grid x grid
// patch grid in row-major order. Told apart by the count: grid^2 (no class token, GAP) or
// grid^2 + 1 (class token). Throws std::invalid_argument when `tokens` is neither.
struct PosembLayout {
  bool class_token = false;
  int64_t grid = 0;
};
PosembLayout posemb_layout(int64_t tokens);

// A position embedding [1, src_tokens, dim] resized to [1, dst_tokens, dim]: the patch grid
// resized bilinearly (resize_bilinear), the class token row copied. A source class token the
// target lacks (TOKEN -> GAP) is dropped; a target class token the source lacks (GAP -> TOKEN)
// keeps its row of `dst_initial` (the target's own initialisation, [1, dst_tokens, dim]).
std::vector<double> zoom_posemb(const std::vector<double>& src, int64_t src_tokens,
                                const std::vector<double>& dst_initial, int64_t dst_tokens,
                                int64_t dim);

}  // namespace vmoe
