// The bodies of the CUDA backend's elementwise and row kernels, as __host__ __device__ functions
// of a thread's position in the launch grid. core/cuda/kernels.cu runs them in __global__
// kernels; the tests run the very same bodies over the same grid on the host
// (test/core/test_cuda_kernel_bodies.cpp) and compare them with the CPU backend, so the kernel
// math is tested on machines without a GPU. Only what a body needs is included here: this header
// is compiled by nvcc and by the host compiler alike.
//
// Row kernels (softmax, layer norm) give one block to each row. Their threads cooperate through
// a block reduction, written once here as a fixed tree over the per-thread partials in shared
// memory: the host run of a block pairs the partials in the same order, so host and device add
// in the same order.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/elementwise_math.h"
#include "core/op_kinds.h"

namespace vmoe::cuda {

// Where a thread runs: CUDA's blockIdx.x, threadIdx.x, blockDim.x and gridDim.x.
struct GridPos {
  int64_t block = 0, thread = 0, block_dim = 1, grid_dim = 1;
};

// The elements a thread of an elementwise kernel handles: i = block * block_dim + thread, then
// every grid_dim * block_dim elements (a grid-stride loop, so any grid covers any n).
template <class F>
VMOE_HD inline void for_grid_stride(const GridPos& p, int64_t n, F&& f) {
  for (int64_t i = p.block * p.block_dim + p.thread; i < n; i += p.grid_dim * p.block_dim)
    f(i);
}

// y[i] = op(x[i]) for this thread's elements.
template <class T>
VMOE_HD inline void unary_body(const GridPos& p, UnaryOp op, const T* x, T* y, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) { y[i] = unary_value<StdMath>(op, x[i]); });
}

// gx[i] = gy[i] * op'(x[i]) for this thread's elements.
template <class T>
VMOE_HD inline void unary_backward_body(const GridPos& p, UnaryOp op, const T* x, const T* y,
                                        const T* gy, T* gx, int64_t n) {
  for_grid_stride(p, n,
                  [&](int64_t i) { gx[i] = gy[i] * unary_derivative<StdMath>(op, x[i], y[i]); });
}

// The reductions of a row kernel's block.
struct MaxOp {
  template <class T>
  VMOE_HD T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct SumOp {
  template <class T>
  VMOE_HD T operator()(T a, T b) const {
    return a + b;
  }
};

// One step of the block's tree reduction over `partials` (block_dim values, block_dim a power
// of two): thread t < stride combines partials[t] and partials[t + stride]. The device runs the
// steps for stride = block_dim / 2, ..., 1 with a barrier after each; partials[0] is the result.
template <class T, class Op>
VMOE_HD inline void tree_reduce_step(T* partials, int64_t thread, int64_t stride, Op op) {
  if (thread < stride) partials[thread] = op(partials[thread], partials[thread + stride]);
}

// Softmax of one row of n values (block = row), in three phases separated by block reductions:
//   1. softmax_partial_max: each thread's max over its columns -> block max m;
//   2. softmax_partial_sum: each thread's sum of exp(x - m) -> block sum s;
//   3. softmax_write: y = exp(x - m) / s, or (x - m) - log s for the log-softmax.
template <class T>
VMOE_HD inline T softmax_partial_max(const T* row, int64_t n, int64_t thread, int64_t threads) {
  T m = -INFINITY;
  for (int64_t j = thread; j < n; j += threads)
    m = row[j] > m ? row[j] : m;
  return m;
}

template <class T>
VMOE_HD inline T softmax_partial_sum(const T* row, int64_t n, T m, int64_t thread,
                                     int64_t threads) {
  T s = 0;
  for (int64_t j = thread; j < n; j += threads)
    s += std::exp(row[j] - m);
  return s;
}

template <class T>
VMOE_HD inline void softmax_write(const T* row, T* out, int64_t n, T m, T s, SoftmaxKind kind,
                                  int64_t thread, int64_t threads) {
  if (kind == SoftmaxKind::log) {
    const T log_s = std::log(s);
    for (int64_t j = thread; j < n; j += threads)
      out[j] = (row[j] - m) - log_s;
  } else {
    const T inv = T(1) / s;
    for (int64_t j = thread; j < n; j += threads)
      out[j] = std::exp(row[j] - m) * inv;
  }
}

// Layer norm of one row of d values (block = row): the mean (sum / d), then the variance around
// it (sum of squares / d, two passes as the CPU backend), then y = (x - mean) * rstd * scale +
// bias; mean and rstd = 1 / sqrt(var + eps) are kept for the backward pass.
template <class T>
VMOE_HD inline T layer_norm_partial_sum(const T* row, int64_t d, int64_t thread, int64_t threads) {
  T s = 0;
  for (int64_t j = thread; j < d; j += threads)
    s += row[j];
  return s;
}

template <class T>
VMOE_HD inline T layer_norm_partial_var(const T* row, int64_t d, T mean, int64_t thread,
                                        int64_t threads) {
  T s = 0;
  for (int64_t j = thread; j < d; j += threads)
    s += (row[j] - mean) * (row[j] - mean);
  return s;
}

template <class T>
VMOE_HD inline void layer_norm_write(const T* row, const T* scale, const T* bias, T* out, int64_t d,
                                     T mean, T rstd, int64_t thread, int64_t threads) {
  for (int64_t j = thread; j < d; j += threads)
    out[j] = (row[j] - mean) * rstd * scale[j] + bias[j];
}

}  // namespace vmoe::cuda
