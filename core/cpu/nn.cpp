// CPU kernels of the fused neural-network ops: softmax, layer norm, cross-entropies, dropout
// masks, random fills and image patches.
#include <algorithm>
#include <cmath>
#include <vector>

#include <omp.h>

#include "core/cpu/cpu_common.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"
#include "core/cpu/row_reductions.h"

namespace vmoe::cpu {

void softmax(const Tensor& x, const Tensor& y, SoftmaxKind kind) {
  const bool log = kind == SoftmaxKind::log;
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  dispatch_float(x.dtype(), "softmax", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* py = y.device_data<T>();
#pragma omp parallel for if (rows * n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = px + r * n;
      T* out = py + r * n;
      const auto [m, s] = exp_row(in, out, n);
      if (log) {
        // (x - m) - log s, not x - (m + log s): the sum would round to the ulp of m.
        const T log_s = std::log(s);
        for (int64_t j = 0; j < n; ++j)
          out[j] = (in[j] - m) - log_s;
      } else {
        const T inv = T(1) / s;
        for (int64_t j = 0; j < n; ++j)
          out[j] *= inv;
      }
    }
  });
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, SoftmaxKind kind) {
  const bool log = kind == SoftmaxKind::log;
  const int64_t n = y.size(-1), rows = n ? y.numel() / n : 0;
  dispatch_float(y.dtype(), "softmax_backward", [&]<class T>(T) {
    const T* py = y.device_data<T>();
    const T* pg = gy.device_data<T>();
    T* po = gx.device_data<T>();
#pragma omp parallel for if (rows * n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = py + r * n;
      const T* gr = pg + r * n;
      T* out = po + r * n;
      if (log) {  // gx = gy - softmax * sum(gy)
        const T s = row_sum(gr, n);
        for (int64_t j = 0; j < n; ++j)
          out[j] = gr[j] - std::exp(yr[j]) * s;
      } else {  // gx = y * (gy - sum(gy * y))
        const T s = row_dot(gr, yr, n);
        for (int64_t j = 0; j < n; ++j)
          out[j] = yr[j] * (gr[j] - s);
      }
    }
  });
}

void layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  const int64_t d = x.size(-1), rows = d ? x.numel() / d : 0;
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    const T* ps = scale.device_data<T>();
    const T* pb = bias.device_data<T>();
    T* py = y.device_data<T>();
    T* pm = mean.device_data<T>();
    T* pr = rstd.device_data<T>();
#pragma omp parallel for if (rows * d > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = px + r * d;
      T* out = py + r * d;
      // On vector lanes in a fixed order (serial sums would not vectorise).
      const T mu = row_sum(in, d) / T(d);
      const T var = row_sum_sq_dev(in, mu, d) / T(d);
      const T rs = T(1) / std::sqrt(var + T(eps));
      for (int64_t j = 0; j < d; ++j)
        out[j] = (in[j] - mu) * rs * ps[j] + pb[j];
      pm[r] = mu;
      pr[r] = rs;
    }
  });
}

namespace {

// Layer norm's parameter gradients are summed per block of rows: at least 64 rows a block, at
// most 256 blocks (so that the partial sums stay small). The blocks depend on the row count only.
int64_t layer_norm_block(int64_t rows) {
  return std::max<int64_t>(64, (rows + 255) / 256);
}

template <class T>
struct LayerNormRowSums {
  T g, gx;  // sums over the row of g * scale and g * scale * xhat
};

// Both sums of one row in one pass, on vector lanes in a fixed order (as row_sum).
template <class T>
LayerNormRowSums<T> layer_norm_row_sums(const T* x, const T* g, const T* scale, T mu, T rs,
                                        int64_t d) {
  typename Lanes<T>::type lane_g = {}, lane_gx = {};
  int64_t j = 0;
  for (; j + kRowLanes<T> <= d; j += kRowLanes<T>) {
    const typename Lanes<T>::type gj = load_lanes(g + j) * load_lanes(scale + j);
    lane_g += gj;
    lane_gx += gj * ((load_lanes(x + j) - mu) * rs);
  }
  LayerNormRowSums<T> s{sum_lanes<T>(lane_g), sum_lanes<T>(lane_gx)};
  for (; j < d; ++j) {
    const T gj = g[j] * scale[j];
    s.g += gj;
    s.gx += gj * ((x[j] - mu) * rs);
  }
  return s;
}

}  // namespace

void layer_norm_backward(const Tensor& x, const Tensor& scale, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                         const Tensor& gscale, const Tensor& gbias) {
  const int64_t d = x.size(-1), rows = d ? x.numel() / d : 0;
  dispatch_float(x.dtype(), "layer_norm_backward", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    const T* ps = scale.device_data<T>();
    const T* pm = mean.device_data<T>();
    const T* pr = rstd.device_data<T>();
    const T* pg = gy.device_data<T>();
    T* po = gx.device_data<T>();
    // The parameter gradients as partial sums over fixed blocks of rows, added in block order:
    // the same bits for any thread count.
    const int64_t block = layer_norm_block(rows), blocks = (rows + block - 1) / block;
    std::vector<T> partial(size_t(blocks) * size_t(2 * d), T(0));
#pragma omp parallel for if (rows * d > kParallelGrain)
    for (int64_t b = 0; b < blocks; ++b) {
      T* __restrict gs = partial.data() + size_t(b) * size_t(2 * d);
      T* __restrict gb = gs + d;
      for (int64_t r = b * block; r < std::min(rows, (b + 1) * block); ++r) {
        const T* __restrict in = px + r * d;
        const T* __restrict g = pg + r * d;
        T* __restrict out = po + r * d;
        const T mu = pm[r], rs = pr[r];
        const LayerNormRowSums<T> sums = layer_norm_row_sums(in, g, ps, mu, rs, d);
        const T mean_g = sums.g / T(d), mean_gx = sums.gx / T(d);
        // Two loops, each of which vectorises.
        for (int64_t j = 0; j < d; ++j) {
          const T xhat = (in[j] - mu) * rs;
          gs[j] += g[j] * xhat;
          gb[j] += g[j];
        }
        for (int64_t j = 0; j < d; ++j)
          out[j] = rs * (g[j] * ps[j] - mean_g - (in[j] - mu) * rs * mean_gx);
      }
    }
    T* os = gscale.device_data<T>();
    T* ob = gbias.device_data<T>();
    for (int64_t j = 0; j < d; ++j) {
      T s = 0, b = 0;
      for (int64_t k = 0; k < blocks; ++k) {
        s += partial[size_t(k) * size_t(2 * d) + size_t(j)];
        b += partial[size_t(k) * size_t(2 * d) + size_t(d + j)];
      }
      os[j] = s;
      ob[j] = b;
    }
  });
}

void softmax_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits) {
  const int64_t b = logits.size(0), c = logits.size(1);
  const int32_t* pl = labels.device_data<int32_t>();
  check_in_range(logits.device(), "softmax_cross_entropy", "label", pl, b, 0, c);
  dispatch_float(logits.dtype(), "softmax_cross_entropy", [&]<class T>(T) {
    const T* px = logits.device_data<T>();
    T* ploss = loss.device_data<T>();
    T* pd = dlogits.device_data<T>();
#pragma omp parallel for if (b * c > kParallelGrain)
    for (int64_t i = 0; i < b; ++i) {
      const T* row = px + i * c;
      T* drow = pd + i * c;
      if (pl[i] < 0 || pl[i] >= c) {  // a kernel error (reported above): the row counts as absent
        ploss[i] = T(0);
        std::fill(drow, drow + c, T(0));
        continue;
      }
      T m = row[0];
      for (int64_t j = 1; j < c; ++j)
        m = std::max(m, row[j]);
      T s = 0;
      for (int64_t j = 0; j < c; ++j) {
        drow[j] = std::exp(row[j] - m);
        s += drow[j];
      }
      ploss[i] = (m - row[pl[i]]) + std::log(s);  // m + log s would round to the ulp of m
      const T inv = T(1) / (s * T(b));
      for (int64_t j = 0; j < c; ++j)
        drow[j] *= inv;
      drow[pl[i]] -= T(1) / T(b);
    }
  });
}

void sigmoid_xent(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                  const Tensor& dlogits) {
  const int64_t b = logits.size(0), c = logits.size(1);
  const int32_t* pl = labels.device_data<int32_t>();
  check_in_range(logits.device(), "sigmoid_cross_entropy", "label", pl, b, 0, c);
  dispatch_float(logits.dtype(), "sigmoid_cross_entropy", [&]<class T>(T) {
    const T* px = logits.device_data<T>();
    T* ploss = loss.device_data<T>();
    T* pd = dlogits.device_data<T>();
#pragma omp parallel for if (b * c > kParallelGrain)
    for (int64_t i = 0; i < b; ++i) {
      T total = 0;
      for (int64_t j = 0; j < c; ++j) {
        const T x = px[i * c + j];
        const T y = j == pl[i] ? T(1) : T(0);
        // Stable form of -y log s(x) - (1 - y) log(1 - s(x)).
        total += std::max(x, T(0)) - x * y + std::log1p(std::exp(-std::abs(x)));
        pd[i * c + j] = (T(1) / (T(1) + std::exp(-x)) - y) / T(b);
      }
      ploss[i] = total;
    }
  });
}

namespace {

// Random values of elements offset .. offset + n - 1, computed in double by draw(key, first,
// count, buffer) (uniform01_run / normal01_run) in runs of kRun spread over the threads, each
// handed to put(i, value).
constexpr int64_t kRun = 1024;

template <class Draw, class Put>
void for_each_draw(RngKey key, uint64_t offset, int64_t n, Draw draw, Put put) {
  const int64_t runs = (n + kRun - 1) / kRun;
#pragma omp parallel for if (n > kParallelGrain / 8)
  for (int64_t r = 0; r < runs; ++r) {
    double values[kRun];
    const int64_t first = r * kRun, count = std::min(kRun, n - first);
    draw(key, offset + uint64_t(first), count, values);
    for (int64_t i = 0; i < count; ++i)
      put(first + i, values[i]);
  }
}

}  // namespace

void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset) {
  dispatch_float(mask.dtype(), "dropout", [&]<class T>(T) {
    T* pm = mask.device_data<T>();
    const T keep_scale = T(1.0 / (1.0 - rate));
    for_each_draw(key, offset, mask.numel(), uniform01_run,
                  [&](int64_t i, double u) { pm[i] = u >= rate ? keep_scale : T(0); });
  });
}

void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi) {
  dispatch_float(out.dtype(), "random", [&]<class T>(T) {
    T* p = out.device_data<T>();
    if (dist == Distribution::normal)
      for_each_draw(key, offset, out.numel(), normal01_run,
                    [&](int64_t i, double z) { p[i] = T(z); });
    else
      for_each_draw(key, offset, out.numel(), uniform01_run,
                    [&](int64_t i, double u) { p[i] = T(lo + (hi - lo) * u); });
  });
}

void patches(const Tensor& images, int64_t p, const Tensor& out, PatchDirection dir) {
  const bool backward = dir == PatchDirection::to_images;
  // images [B, H, W, C] <-> out [B, (H/p)*(W/p), p*p*C]
  const int64_t b = images.size(0), h = images.size(1), w = images.size(2), c = images.size(3);
  const int64_t gh = h / p, gw = w / p, row = p * c;
  dispatch_float(images.dtype(), "image_to_patches", [&]<class T>(T) {
    T* pi = images.device_data<T>();
    T* po = out.device_data<T>();
#pragma omp parallel for collapse(2) if (b * h * w * c > kParallelGrain)
    for (int64_t n = 0; n < b; ++n) {
      for (int64_t gy = 0; gy < gh; ++gy) {
        for (int64_t gx = 0; gx < gw; ++gx) {
          for (int64_t py = 0; py < p; ++py) {
            T* img = pi + ((n * h + gy * p + py) * w + gx * p) * c;
            T* pat = po + ((n * gh + gy) * gw + gx) * p * row + py * row;
            if (backward)
              std::copy(pat, pat + row, img);
            else
              std::copy(img, img + row, pat);
          }
        }
      }
    }
  });
}

}  // namespace vmoe::cpu
