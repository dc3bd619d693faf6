// The bodies of the CUDA backend's elementwise kernels, as __host__ __device__ functions of a
// thread's position in the launch grid, templated on the stored element type T (compute_t<T>
// is the type the math runs in: f32 for bf16). core/cuda/kernels.cu runs them in __global__
// kernels; the tests run the very same bodies over the same grid on the host
// (test/core/test_cuda_kernel_bodies.cpp) and compare them with the CPU backend, so the kernel
// math is tested on machines without a GPU. Only what a body needs is included here: this header
// is compiled by nvcc and by the host compiler alike.
//
// Also here: what the row and reduction bodies (row_bodies.h, reduce_bodies.h) share, namely the
// launch geometry and the block of threads (`Block`) through which a block's threads cooperate:
//   blk.block(), blk.blocks(), blk.thread(), blk.threads(): CUDA's blockIdx.x, gridDim.x,
//     threadIdx.x, blockDim.x;
//   blk.sync(): __syncthreads();
//   blk.scratch<T>(): the block's shared memory, room for kRowThreads values of up to
//     kScratchValueBytes bytes each.
// The device's Block is core/cuda/device_block.cuh; the tests' runs every thread of a block on
// its own host thread with a barrier for sync(), so a body runs unchanged in both places.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/element_access.h"
#include "core/cuda/strided_index.h"
#include "core/elementwise_math.h"
#include "core/op_kinds.h"

namespace vmoe::cuda {

// ---- launch geometry (the launchers and the tests use the same numbers) ----

// Threads per block of the elementwise kernels.
inline constexpr int kElementThreads = 256;
// Enough blocks to fill an H200 (132 SMs) several times; grid-stride loops do the rest.
inline constexpr int64_t kMaxElementBlocks = 132 * 16;
// Threads per block of the row kernels, at most: a power of two (the tree reduction needs one).
inline constexpr int kRowThreads = 256;
// The largest value a block reduction or scan keeps in shared memory (an f64 value + index).
inline constexpr int kScratchValueBytes = 16;
// Blocks of a row kernel, at most (rows beyond it are taken by a block-stride loop).
inline constexpr int64_t kMaxRowBlocks = int64_t(1) << 30;

// Blocks of an elementwise kernel over n elements.
VMOE_HD inline int64_t element_blocks(int64_t n) {
  const int64_t b = (n + kElementThreads - 1) / kElementThreads;
  return b < 1 ? 1 : (b > kMaxElementBlocks ? kMaxElementBlocks : b);
}

// Threads of a row kernel over rows of n values: the smallest power of two >= n within
// [32, kRowThreads] (a warp at least; short rows such as the router's E logits waste no more).
VMOE_HD inline int64_t row_threads(int64_t n) {
  int64_t t = 32;
  while (t < n && t < kRowThreads)
    t *= 2;
  return t;
}

VMOE_HD inline int64_t row_blocks(int64_t rows) {
  return rows < 1 ? 1 : (rows > kMaxRowBlocks ? kMaxRowBlocks : rows);
}

// ---- the grid ----

// Where a thread of an elementwise kernel runs: CUDA's blockIdx.x, threadIdx.x, blockDim.x and
// gridDim.x.
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

// ---- block reductions ----

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
// of two): thread t < stride combines partials[t] and partials[t + stride]. The steps run for
// stride = block_dim / 2, ..., 1 with a barrier after each; partials[0] is the result.
template <class T, class Op>
VMOE_HD inline void tree_reduce_step(T* partials, int64_t thread, int64_t stride, Op op) {
  if (thread < stride) partials[thread] = op(partials[thread], partials[thread + stride]);
}

// The block's reduction of every thread's `value`, in a fixed tree order (the same bits on
// every run), the result returned to every thread.
template <class Block, class T, class Op>
VMOE_HD inline T block_reduce(const Block& blk, T value, Op op) {
  static_assert(sizeof(T) <= kScratchValueBytes, "block_reduce: value too large for scratch");
  T* partials = blk.template scratch<T>();
  partials[blk.thread()] = value;
  blk.sync();
  for (int64_t stride = blk.threads() / 2; stride > 0; stride /= 2) {
    tree_reduce_step(partials, blk.thread(), stride, op);
    blk.sync();
  }
  const T result = partials[0];
  blk.sync();  // the scratch is reused by the next reduction
  return result;
}

// ---- element conversions (copy, fill): through double, as the CPU backend's copy ----

template <class T>
VMOE_HD inline double to_double(const T& v) {
  return double(load(v));
}
template <class T>
VMOE_HD inline T from_double(double v) {
  return T(v);
}
template <>
VMOE_HD inline BFloat16 from_double<BFloat16>(double v) {
  BFloat16 b;
  store(b, float(v));
  return b;
}

// ---- elementwise bodies ----

// dst = src converted, over a strided view of n elements (idx: tensor 0 src, 1 dst). S == D
// moves the bits (the launcher passes same-dtype copies as unsigned words of their size).
template <class S, class D>
VMOE_HD inline void copy_body(const GridPos& p, const S* src, D* dst, const StridedIndex<2>& idx,
                              int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) {
    int64_t off[2];
    strided_offsets(idx, i, off);
    if constexpr (std::is_same_v<S, D>)
      dst[off[1]] = src[off[0]];
    else
      dst[off[1]] = from_double<D>(to_double(src[off[0]]));
  });
}

// dst = value (already in dst's type) over a strided view of n elements.
template <class T>
VMOE_HD inline void fill_body(const GridPos& p, T* dst, T value, const StridedIndex<1>& idx,
                              int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) {
    int64_t off[1];
    strided_offsets(idx, i, off);
    dst[off[0]] = value;
  });
}

template <class C>
VMOE_HD inline C binary_value(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    case BinaryOp::equal:
      return a == b ? C(1) : C(0);
  }
  return C(0);
}

// out = a op b over strided views (idx: tensor 0 a, 1 b, 2 out; broadcast axes have stride 0).
template <class T>
VMOE_HD inline void binary_body(const GridPos& p, BinaryOp op, const T* a, const T* b, T* out,
                                const StridedIndex<3>& idx, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) {
    int64_t off[3];
    strided_offsets(idx, i, off);
    store(out[off[2]], binary_value(op, load(a[off[0]]), load(b[off[1]])));
  });
}

// y[i] = op(x[i]) for this thread's elements (contiguous).
template <class T>
VMOE_HD inline void unary_body(const GridPos& p, UnaryOp op, const T* x, T* y, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) { store(y[i], unary_value<StdMath>(op, load(x[i]))); });
}

// gx[i] = gy[i] * op'(x[i]) for this thread's elements (contiguous).
template <class T>
VMOE_HD inline void unary_backward_body(const GridPos& p, UnaryOp op, const T* x, const T* y,
                                        const T* gy, T* gx, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) {
    store(gx[i], load(gy[i]) * unary_derivative<StdMath>(op, load(x[i]), load(y[i])));
  });
}

// y = gelu(x + bias) for x, y [G, R, F] and bias [G, F] contiguous (n = G * R * F): the sum
// stays in the compute type (f32 for bf16) up to the GELU.
template <class T>
VMOE_HD inline void bias_gelu_body(const GridPos& p, const T* x, const T* bias, T* y, int64_t rows,
                                   int64_t f, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) {
    const int64_t b = (i / (rows * f)) * f + i % f;
    store(y[i], unary_value<StdMath>(UnaryOp::gelu, load(x[i]) + load(bias[b])));
  });
}

// gx = gy * gelu'(x + bias), shapes as bias_gelu_body.
template <class T>
VMOE_HD inline void bias_gelu_backward_body(const GridPos& p, const T* x, const T* bias,
                                            const T* gy, T* gx, int64_t rows, int64_t f,
                                            int64_t n) {
  using C = compute_t<T>;
  for_grid_stride(p, n, [&](int64_t i) {
    const int64_t b = (i / (rows * f)) * f + i % f;
    // GELU's derivative reads only its input (the output argument is unused).
    const C d = unary_derivative<StdMath>(UnaryOp::gelu, C(load(x[i]) + load(bias[b])), C(0));
    store(gx[i], load(gy[i]) * d);
  });
}

// dst += alpha * src over strided views (idx: tensor 0 dst, 1 src).
template <class T>
VMOE_HD inline void add_scaled_body(const GridPos& p, T* dst, const T* src, double alpha,
                                    const StridedIndex<2>& idx, int64_t n) {
  using C = compute_t<T>;
  const C a = C(alpha);
  for_grid_stride(p, n, [&](int64_t i) {
    int64_t off[2];
    strided_offsets(idx, i, off);
    store(dst[off[0]], load(dst[off[0]]) + a * load(src[off[1]]));
  });
}

// dst *= s over a strided view.
template <class T>
VMOE_HD inline void scale_body(const GridPos& p, T* dst, double s, const StridedIndex<1>& idx,
                               int64_t n) {
  using C = compute_t<T>;
  const C c = C(s);
  for_grid_stride(p, n, [&](int64_t i) {
    int64_t off[1];
    strided_offsets(idx, i, off);
    store(dst[off[0]], load(dst[off[0]]) * c);
  });
}

}  // namespace vmoe::cuda
