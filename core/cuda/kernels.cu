// The CUDA backend's elementwise kernels: each runs a __host__ __device__ body of
// kernel_bodies.h at its grid position (grid-stride loops, kElementThreads per block); the tests
// run the same bodies on the host.
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"
#include "core/cuda/kernels.h"
#include "core/dtype_dispatch.h"

namespace vmoe::cuda {

namespace {

template <class S, class D>
__global__ void copy_kernel(const S* src, D* dst, StridedIndex<2> idx, int64_t n) {
  copy_body(grid_pos(), src, dst, idx, n);
}

template <class T>
__global__ void fill_kernel(T* dst, T value, StridedIndex<1> idx, int64_t n) {
  fill_body(grid_pos(), dst, value, idx, n);
}

template <class T>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, T* out, StridedIndex<3> idx,
                              int64_t n) {
  binary_body(grid_pos(), op, a, b, out, idx, n);
}

template <class T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* y, int64_t n) {
  unary_body(grid_pos(), op, x, y, n);
}

template <class T>
__global__ void unary_backward_kernel(UnaryOp op, const T* x, const T* y, const T* gy, T* gx,
                                      int64_t n) {
  unary_backward_body(grid_pos(), op, x, y, gy, gx, n);
}

template <class T>
__global__ void bias_gelu_kernel(const T* x, const T* bias, T* y, int64_t rows, int64_t f,
                                 int64_t n) {
  bias_gelu_body(grid_pos(), x, bias, y, rows, f, n);
}

template <class T>
__global__ void bias_gelu_backward_kernel(const T* x, const T* bias, const T* gy, T* gx,
                                          int64_t rows, int64_t f, int64_t n) {
  bias_gelu_backward_body(grid_pos(), x, bias, gy, gx, rows, f, n);
}

template <class T>
__global__ void add_scaled_kernel(T* dst, const T* src, double alpha, StridedIndex<2> idx,
                                  int64_t n) {
  add_scaled_body(grid_pos(), dst, src, alpha, idx, n);
}

template <class T>
__global__ void scale_kernel(T* dst, double s, StridedIndex<1> idx, int64_t n) {
  scale_body(grid_pos(), dst, s, idx, n);
}

unsigned blocks_for(int64_t n) {
  return unsigned(element_blocks(n));
}

// The unsigned word of a dtype's size: same-dtype copies move bits.
template <class Fn>
void dispatch_word(size_t bytes, Fn&& fn) {
  switch (bytes) {
    case 1:
      fn(uint8_t{});
      break;
    case 2:
      fn(uint16_t{});
      break;
    case 4:
      fn(uint32_t{});
      break;
    default:
      fn(uint64_t{});
      break;
  }
}

}  // namespace

void launch_copy(const void* src, DType ts, void* dst, DType td, const StridedIndex<2>& idx,
                 int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (ts == td) {
    dispatch_word(dtype_size(ts), [&](auto w) {
      using W = decltype(w);
      copy_kernel<W, W><<<blocks_for(n), kElementThreads, 0, stream>>>(
          static_cast<const W*>(src), static_cast<W*>(dst), idx, n);
    });
  } else {
    dispatch_stored(ts, [&](auto s) {
      using S = decltype(s);
      dispatch_stored(td, [&](auto d) {
        using D = decltype(d);
        copy_kernel<S, D><<<blocks_for(n), kElementThreads, 0, stream>>>(
            static_cast<const S*>(src), static_cast<D*>(dst), idx, n);
      });
    });
  }
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_fill(void* dst, DType t, double value, const StridedIndex<1>& idx, int64_t n,
                 cudaStream_t stream) {
  if (n == 0) return;
  dispatch_stored(t, [&](auto d) {
    using D = decltype(d);
    fill_kernel<D><<<blocks_for(n), kElementThreads, 0, stream>>>(static_cast<D*>(dst),
                                                                  from_double<D>(value), idx, n);
  });
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_binary(BinaryOp op, const T* a, const T* b, T* out, const StridedIndex<3>& idx,
                   int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  binary_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(op, a, b, out, idx, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_unary(UnaryOp op, const T* x, T* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  unary_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(op, x, y, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_unary_backward(UnaryOp op, const T* x, const T* y, const T* gy, T* gx, int64_t n,
                           cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(op, x, y, gy, gx, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_bias_gelu(const T* x, const T* bias, T* y, int64_t rows, int64_t f, int64_t n,
                      cudaStream_t stream) {
  if (n == 0) return;
  bias_gelu_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(x, bias, y, rows, f, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_bias_gelu_backward(const T* x, const T* bias, const T* gy, T* gx, int64_t rows,
                               int64_t f, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  bias_gelu_backward_kernel<T>
      <<<blocks_for(n), kElementThreads, 0, stream>>>(x, bias, gy, gx, rows, f, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_add_scaled(T* dst, const T* src, double alpha, const StridedIndex<2>& idx, int64_t n,
                       cudaStream_t stream) {
  if (n == 0) return;
  add_scaled_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(dst, src, alpha, idx, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_scale(T* dst, double s, const StridedIndex<1>& idx, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<T><<<blocks_for(n), kElementThreads, 0, stream>>>(dst, s, idx, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

#define VMOE_ELEMENTWISE_LAUNCHERS(T)                                                            \
  template void launch_binary<T>(BinaryOp, const T*, const T*, T*, const StridedIndex<3>&,       \
                                 int64_t, cudaStream_t);                                         \
  template void launch_unary<T>(UnaryOp, const T*, T*, int64_t, cudaStream_t);                   \
  template void launch_unary_backward<T>(UnaryOp, const T*, const T*, const T*, T*, int64_t,     \
                                         cudaStream_t);                                          \
  template void launch_add_scaled<T>(T*, const T*, double, const StridedIndex<2>&, int64_t,      \
                                     cudaStream_t);                                              \
  template void launch_scale<T>(T*, double, const StridedIndex<1>&, int64_t, cudaStream_t);      \
  template void launch_bias_gelu<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,           \
                                    cudaStream_t);                                               \
  template void launch_bias_gelu_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, \
                                             int64_t, cudaStream_t);
VMOE_ELEMENTWISE_LAUNCHERS(float)
VMOE_ELEMENTWISE_LAUNCHERS(double)
VMOE_ELEMENTWISE_LAUNCHERS(BFloat16)
#undef VMOE_ELEMENTWISE_LAUNCHERS

}  // namespace vmoe::cuda
