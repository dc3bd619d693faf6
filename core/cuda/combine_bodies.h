// The bodies of the CUDA MoE combine kernels (combine_kernels.cu), as __host__ __device__
// functions of a thread's grid position; test/core/test_cuda_combine_bodies.cpp runs them on the
// host over the same grids and compares them with the CPU kernels (core/cpu/combine.cpp), the
// reference: each sum in the CPU's order.
//
// y [R, D] expert-buffer rows, weights [N, k], rows [N * k] (i64: the buffer row of each choice,
// -1 or out of range = dropped; the entry reports an out-of-range row before these run),
// out / gout [N, D]. T: float or double.
#pragma once
#include <cstdint>

#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"  // GridPos, for_grid_stride

namespace vmoe::cuda {

// out[i, c] = sum over j of weights[i, j] * y[rows[i * k + j], c], j in order from 0.
template <class T>
VMOE_HD inline void combine_body(const GridPos& p, const T* y, const T* weights,
                                 const int64_t* rows, T* out, int64_t n, int64_t d, int64_t k,
                                 int64_t r) {
  for_grid_stride(p, n * d, [&](int64_t e) {
    const int64_t i = e / d, c = e % d;
    T acc = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t row = rows[i * k + j];
      if (row >= 0 && row < r) acc += weights[i * k + j] * y[row * d + c];
    }
    out[e] = acc;
  });
}

// weighted [N * k, D]: choice a's contribution to its row's gradient, weights[a] * gout[a / k]
// (the scatter that follows sums a row's choices in order of a, as the CPU kernel).
template <class T>
VMOE_HD inline void combine_weighted_rows_body(const GridPos& p, const T* weights, const T* gout,
                                               T* weighted, int64_t n, int64_t d, int64_t k) {
  for_grid_stride(p, n * k * d, [&](int64_t e) {
    const int64_t a = e / d, c = e % d;
    weighted[e] = weights[a] * gout[(a / k) * d + c];
  });
}

// gweights[a] = gout[a / k] . y[rows[a]] (0 for a dropped choice), summed over c in order.
template <class T>
VMOE_HD inline void combine_weight_grad_body(const GridPos& p, const T* y, const int64_t* rows,
                                             const T* gout, T* gweights, int64_t n, int64_t d,
                                             int64_t k, int64_t r) {
  for_grid_stride(p, n * k, [&](int64_t a) {
    const int64_t row = rows[a];
    T dot = 0;
    if (row >= 0 && row < r) {
      const T* g = gout + (a / k) * d;
      const T* src = y + row * d;
      for (int64_t c = 0; c < d; ++c)
        dot += g[c] * src[c];
    }
    gweights[a] = dot;
  });
}

}  // namespace vmoe::cuda
