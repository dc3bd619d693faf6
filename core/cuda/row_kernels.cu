// The CUDA backend's row kernels: one block per row (row_threads(n) threads, a block-stride loop
// beyond kMaxRowBlocks rows), each running a __host__ __device__ body of row_bodies.h; the tests
// run the same bodies on the host.
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/element_access.h"
#include "core/cuda/kernel_error_slot.h"
#include "core/cuda/kernels.h"
#include "core/cuda/row_bodies.h"

namespace vmoe::cuda {

namespace {

template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t n, SoftmaxKind kind) {
  VMOE_DEVICE_BLOCK(blk);
  softmax_rows_body(blk, x, y, rows, n, kind);
}

template <class T>
__global__ void softmax_backward_rows_kernel(const T* y, const T* gy, T* gx, int64_t rows,
                                             int64_t n, SoftmaxKind kind) {
  VMOE_DEVICE_BLOCK(blk);
  softmax_backward_rows_body(blk, y, gy, gx, rows, n, kind);
}

template <class T>
__global__ void layer_norm_rows_kernel(const T* x, const compute_t<T>* scale,
                                       const compute_t<T>* bias, double eps, T* y,
                                       compute_t<T>* mean, compute_t<T>* rstd, int64_t rows,
                                       int64_t d) {
  VMOE_DEVICE_BLOCK(blk);
  layer_norm_rows_body(blk, x, scale, bias, eps, y, mean, rstd, rows, d);
}

template <class T>
__global__ void layer_norm_backward_rows_kernel(const T* x, const compute_t<T>* scale,
                                                const compute_t<T>* mean, const compute_t<T>* rstd,
                                                const T* gy, T* gx, int64_t rows, int64_t d) {
  VMOE_DEVICE_BLOCK(blk);
  layer_norm_backward_rows_body(blk, x, scale, mean, rstd, gy, gx, rows, d);
}

template <class T>
__global__ void softmax_xent_rows_kernel(const T* logits, const int32_t* labels, T* loss,
                                         T* dlogits, int64_t b, int64_t c, KernelErrorSlot* slot) {
  VMOE_DEVICE_BLOCK(blk);
  softmax_xent_rows_body(blk, logits, labels, loss, dlogits, b, c, slot);
}

template <class T>
__global__ void sigmoid_xent_rows_kernel(const T* logits, const int32_t* labels, T* loss,
                                         T* dlogits, int64_t b, int64_t c, KernelErrorSlot* slot) {
  VMOE_DEVICE_BLOCK(blk);
  sigmoid_xent_rows_body(blk, logits, labels, loss, dlogits, b, c, slot);
}

template <class T>
__global__ void max_last_rows_kernel(const T* x, T* values, int64_t* arg, int64_t rows, int64_t n) {
  VMOE_DEVICE_BLOCK(blk);
  max_last_rows_body(blk, x, values, arg, rows, n);
}

// The grid of a row kernel: one block per row, row_threads(n) threads.
struct RowGrid {
  unsigned blocks, threads;
};
RowGrid row_grid(int64_t rows, int64_t n) {
  return RowGrid{unsigned(row_blocks(rows)), unsigned(row_threads(n))};
}

}  // namespace

template <class T>
void launch_softmax_rows(const T* x, T* y, int64_t rows, int64_t n, SoftmaxKind kind,
                         cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  const RowGrid g = row_grid(rows, n);
  softmax_rows_kernel<T><<<g.blocks, g.threads, 0, stream>>>(x, y, rows, n, kind);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t n,
                                  SoftmaxKind kind, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  const RowGrid g = row_grid(rows, n);
  softmax_backward_rows_kernel<T><<<g.blocks, g.threads, 0, stream>>>(y, gy, gx, rows, n, kind);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_layer_norm_rows(const T* x, const compute_t<T>* scale, const compute_t<T>* bias,
                            double eps, T* y, compute_t<T>* mean, compute_t<T>* rstd, int64_t rows,
                            int64_t d, cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  const RowGrid g = row_grid(rows, d);
  layer_norm_rows_kernel<T>
      <<<g.blocks, g.threads, 0, stream>>>(x, scale, bias, eps, y, mean, rstd, rows, d);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_layer_norm_backward_rows(const T* x, const compute_t<T>* scale,
                                     const compute_t<T>* mean, const compute_t<T>* rstd,
                                     const T* gy, T* gx, int64_t rows, int64_t d,
                                     cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  const RowGrid g = row_grid(rows, d);
  layer_norm_backward_rows_kernel<T>
      <<<g.blocks, g.threads, 0, stream>>>(x, scale, mean, rstd, gy, gx, rows, d);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_softmax_xent_rows(const T* logits, const int32_t* labels, T* loss, T* dlogits,
                              int64_t b, int64_t c, KernelErrorSlot* slot, cudaStream_t stream) {
  if (b == 0 || c == 0) return;
  const RowGrid g = row_grid(b, c);
  softmax_xent_rows_kernel<T>
      <<<g.blocks, g.threads, 0, stream>>>(logits, labels, loss, dlogits, b, c, slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_sigmoid_xent_rows(const T* logits, const int32_t* labels, T* loss, T* dlogits,
                              int64_t b, int64_t c, KernelErrorSlot* slot, cudaStream_t stream) {
  if (b == 0 || c == 0) return;
  const RowGrid g = row_grid(b, c);
  sigmoid_xent_rows_kernel<T>
      <<<g.blocks, g.threads, 0, stream>>>(logits, labels, loss, dlogits, b, c, slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_max_last_rows(const T* x, T* values, int64_t* arg, int64_t rows, int64_t n,
                          cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  const RowGrid g = row_grid(rows, n);
  max_last_rows_kernel<T><<<g.blocks, g.threads, 0, stream>>>(x, values, arg, rows, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

#define VMOE_ROW_LAUNCHERS(T)                                                                      \
  template void launch_softmax_rows<T>(const T*, T*, int64_t, int64_t, SoftmaxKind, cudaStream_t); \
  template void launch_softmax_backward_rows<T>(const T*, const T*, T*, int64_t, int64_t,          \
                                                SoftmaxKind, cudaStream_t);                        \
  template void launch_layer_norm_rows<T>(const T*, const compute_t<T>*, const compute_t<T>*,      \
                                          double, T*, compute_t<T>*, compute_t<T>*, int64_t,       \
                                          int64_t, cudaStream_t);                                  \
  template void launch_layer_norm_backward_rows<T>(const T*, const compute_t<T>*,                  \
                                                   const compute_t<T>*, const compute_t<T>*,       \
                                                   const T*, T*, int64_t, int64_t, cudaStream_t);  \
  template void launch_softmax_xent_rows<T>(const T*, const int32_t*, T*, T*, int64_t, int64_t,    \
                                            KernelErrorSlot*, cudaStream_t);                       \
  template void launch_sigmoid_xent_rows<T>(const T*, const int32_t*, T*, T*, int64_t, int64_t,    \
                                            KernelErrorSlot*, cudaStream_t);                       \
  template void launch_max_last_rows<T>(const T*, T*, int64_t*, int64_t, int64_t, cudaStream_t);
VMOE_ROW_LAUNCHERS(float)
VMOE_ROW_LAUNCHERS(double)
VMOE_ROW_LAUNCHERS(BFloat16)
#undef VMOE_ROW_LAUNCHERS

}  // namespace vmoe::cuda
