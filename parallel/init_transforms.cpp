// Tile, stack and the bilinear position-embedding zoom of init rules.
#include "parallel/init_transforms.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace vmoe {

namespace {

// [out][in] interpolation weights of one axis, as jax.image.scale_and_translate computes them
// for the triangle kernel with antialiasing and no translation.
std::vector<std::vector<double>> axis_weights(int64_t in, int64_t out) {
  const double inv_scale = double(in) / double(out);
  const double kernel_scale = std::max(inv_scale, 1.0);
  std::vector<std::vector<double>> w(size_t(out), std::vector<double>(size_t(in), 0.0));
  for (int64_t i = 0; i < out; ++i) {
    const double sample = (double(i) + 0.5) * inv_scale - 0.5;
    double total = 0;
    for (int64_t j = 0; j < in; ++j) {
      const double d = std::abs(double(j) - sample) / kernel_scale;
      w[size_t(i)][size_t(j)] = std::max(0.0, 1.0 - d);
      total += w[size_t(i)][size_t(j)];
    }
    for (double& v : w[size_t(i)])
      v = total > 0 ? v / total : 0.0;
  }
  return w;
}

bool is_square(int64_t n, int64_t& side) {
  if (n < 0) return false;
  side = int64_t(std::llround(std::sqrt(double(n))));
  return side * side == n;
}

}  // namespace

std::vector<double> tile_leading(const std::vector<double>& x, int64_t times) {
  if (times < 1) throw std::invalid_argument("tile_leading: times must be >= 1");
  std::vector<double> out;
  out.reserve(x.size() * size_t(times));
  for (int64_t t = 0; t < times; ++t)
    out.insert(out.end(), x.begin(), x.end());
  return out;
}

std::vector<double> stack_leading(const std::vector<std::vector<double>>& xs) {
  std::vector<double> out;
  for (const std::vector<double>& x : xs) {
    if (x.size() != xs.front().size())
      throw std::invalid_argument("stack_leading: arrays of different sizes");
    out.insert(out.end(), x.begin(), x.end());
  }
  return out;
}

std::vector<double> resize_bilinear(const std::vector<double>& x, int64_t in_h, int64_t in_w,
                                    int64_t channels, int64_t out_h, int64_t out_w) {
  if (in_h < 1 || in_w < 1 || out_h < 1 || out_w < 1 || channels < 1 ||
      int64_t(x.size()) != in_h * in_w * channels) {
    throw std::invalid_argument("resize_bilinear: sizes do not fit the array");
  }
  const auto wh = axis_weights(in_h, out_h), ww = axis_weights(in_w, out_w);
  // Rows first ([out_h, in_w, C]), then columns: separable, as jax applies it axis by axis.
  std::vector<double> rows(size_t(out_h * in_w * channels), 0.0);
  for (int64_t i = 0; i < out_h; ++i)
    for (int64_t r = 0; r < in_h; ++r) {
      const double w = wh[size_t(i)][size_t(r)];
      if (w == 0) continue;
      for (int64_t k = 0; k < in_w * channels; ++k)
        rows[size_t(i * in_w * channels + k)] += w * x[size_t(r * in_w * channels + k)];
    }
  std::vector<double> out(size_t(out_h * out_w * channels), 0.0);
  for (int64_t i = 0; i < out_h; ++i)
    for (int64_t j = 0; j < out_w; ++j)
      for (int64_t c = 0; c < in_w; ++c) {
        const double w = ww[size_t(j)][size_t(c)];
        if (w == 0) continue;
        for (int64_t k = 0; k < channels; ++k)
          out[size_t((i * out_w + j) * channels + k)] +=
              w * rows[size_t((i * in_w + c) * channels + k)];
      }
  return out;
}

PosembLayout posemb_layout(int64_t tokens) {
  int64_t side = 0;
  if (is_square(tokens, side) && side > 0) return {false, side};
  if (is_square(tokens - 1, side) && side > 0) return {true, side};
  throw std::invalid_argument("a position embedding of " + std::to_string(tokens) +
                              " tokens is neither a square patch grid nor one plus a class token");
}

std::vector<double> zoom_posemb(const std::vector<double>& src, int64_t src_tokens,
                                const std::vector<double>& dst_initial, int64_t dst_tokens,
                                int64_t dim) {
  const PosembLayout s = posemb_layout(src_tokens), d = posemb_layout(dst_tokens);
  if (int64_t(src.size()) != src_tokens * dim || int64_t(dst_initial.size()) != dst_tokens * dim)
    throw std::invalid_argument("zoom_posemb: sizes do not fit the arrays");
  const auto src_grid = src.begin() + (s.class_token ? dim : 0);
  const std::vector<double> grid(src_grid, src_grid + s.grid * s.grid * dim);
  const std::vector<double> zoomed = resize_bilinear(grid, s.grid, s.grid, dim, d.grid, d.grid);
  std::vector<double> out;
  out.reserve(size_t(dst_tokens * dim));
  if (d.class_token) {
    const auto row = s.class_token ? src.begin() : dst_initial.begin();
    out.insert(out.end(), row, row + dim);
  }
  out.insert(out.end(), zoomed.begin(), zoomed.end());
  return out;
}

}  // namespace vmoe
