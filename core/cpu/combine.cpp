// CPU kernels of the MoE combine: each token's output is the weighted sum of the expert-buffer
// rows its choices landed in, read in place (no [N * k, D] copy of the picked rows).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"
#include "core/cpu/row_reductions.h"

namespace vmoe::cpu {

void combine(const Tensor& y, const Tensor& weights, const Tensor& rows, const Tensor& out) {
  const int64_t n = out.size(0), d = out.size(1), k = weights.size(1), r = y.size(0);
  const int64_t* pr = rows.device_data<int64_t>();
  check_in_range(out.device(), "combine", "row", pr, n * k, -1, r);
  dispatch_float(out.dtype(), "combine", [&]<class T>(T) {
    const T* py = y.device_data<T>();
    const T* pw = weights.device_data<T>();
    T* po = out.device_data<T>();
#pragma omp parallel for if (n * k * d > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      T* o = po + i * d;
      std::fill(o, o + d, T(0));
      for (int64_t j = 0; j < k; ++j) {
        const int64_t row = pr[i * k + j];
        if (row < 0 || row >= r) continue;
        const T w = pw[i * k + j];
        const T* src = py + row * d;
        for (int64_t c = 0; c < d; ++c)
          o[c] += w * src[c];
      }
    }
  });
}

void combine_backward(const Tensor& y, const Tensor& weights, const Tensor& rows,
                      const Tensor& gout, const Tensor& gy, const Tensor& gweights) {
  const int64_t n = gout.size(0), d = gout.size(1), k = weights.size(1), r = y.size(0);
  const int64_t* pr = rows.device_data<int64_t>();
  check_in_range(gy.device(), "combine", "row", pr, n * k, -1, r);
  dispatch_float(gy.dtype(), "combine_backward", [&]<class T>(T) {
    const T* py = y.device_data<T>();
    const T* pw = weights.device_data<T>();
    const T* pg = gout.device_data<T>();
    T* pgy = gy.device_data<T>();
    T* pgw = gweights.device_data<T>();
    // Routing uses every row for at most one choice: then each row's gradient is written
    // once, in parallel over rows, from the choice that uses it (a serial pass finds it).
    std::vector<int64_t> user(size_t(r), -1);
    bool shared = false;
    for (int64_t a = 0; a < n * k && !shared; ++a) {
      const int64_t row = pr[a];
      if (row < 0 || row >= r) continue;
      shared = user[size_t(row)] >= 0;
      user[size_t(row)] = a;
    }
#pragma omp parallel if (n * k * d > kParallelGrain)
    {
      if (!shared) {
        // Row by row, both gradients from one read of the token's gout row: gy[row] and the
        // weight's, the dot of gout and y on vector lanes in a fixed order (a serial sum would
        // not vectorise).
#pragma omp for nowait
        for (int64_t row = 0; row < r; ++row) {
          T* dst = pgy + row * d;
          const int64_t a = user[size_t(row)];
          if (a < 0) {
            std::fill(dst, dst + d, T(0));
            continue;
          }
          const T w = pw[a];
          const T* g = pg + (a / k) * d;
          for (int64_t c = 0; c < d; ++c)
            dst[c] = w * g[c];
          pgw[a] = row_dot(g, py + row * d, d);
        }
        // The dropped choices' weights.
#pragma omp for
        for (int64_t a = 0; a < n * k; ++a)
          if (pr[a] < 0 || pr[a] >= r) pgw[a] = T(0);
      } else {
        // A row several choices use: their sum, the columns split between threads so that no
        // two threads add to one element.
#pragma omp single
        if (r * d > 0) std::memset(pgy, 0, size_t(r * d) * sizeof(T));
        const int64_t chunk = std::max<int64_t>(16, d / 8);
        const int64_t chunks = (d + chunk - 1) / chunk;
#pragma omp for
        for (int64_t ci = 0; ci < chunks; ++ci) {
          const int64_t c0 = ci * chunk, c1 = std::min(d, c0 + chunk);
          for (int64_t a = 0; a < n * k; ++a) {
            const int64_t row = pr[a];
            if (row < 0 || row >= r) continue;
            const T w = pw[a];
            const T* g = pg + (a / k) * d;
            T* dst = pgy + row * d;
            for (int64_t c = c0; c < c1; ++c)
              dst[c] += w * g[c];
          }
        }
#pragma omp for
        for (int64_t a = 0; a < n * k; ++a) {
          const int64_t row = pr[a];
          pgw[a] = row >= 0 && row < r ? row_dot(pg + (a / k) * d, py + row * d, d) : T(0);
        }
      }
    }
  });
}

}  // namespace vmoe::cpu
