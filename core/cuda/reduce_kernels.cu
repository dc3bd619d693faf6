// The CUDA backend's reductions and scans: each kernel runs a __host__ __device__ body of
// reduce_bodies.h; sums have a fixed order (no float atomics), so every run gives the same bits.
// The tests run the same bodies on the host.
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/element_access.h"
#include "core/cuda/kernels.h"
#include "core/cuda/reduce_bodies.h"

namespace vmoe::cuda {

namespace {

template <class T>
__global__ void sum_squares_partial_kernel(const T* x, int64_t n, double* partials) {
  VMOE_DEVICE_BLOCK(blk);
  sum_squares_partial_body(blk, x, n, partials);
}

__global__ void sum_squares_final_kernel(const double* partials, int64_t count, double* out) {
  VMOE_DEVICE_BLOCK(blk);
  sum_squares_final_body(blk, partials, count, out);
}

template <class T>
__global__ void reduce_sum_rows_kernel(const T* x, T* out, ReduceSumPlan plan) {
  VMOE_DEVICE_BLOCK(blk);
  reduce_sum_rows_body(blk, x, out, plan);
}

template <class T>
__global__ void reduce_sum_columns_kernel(const T* x, T* out, double* partials, ReduceSumPlan plan,
                                          int64_t chunks) {
  reduce_sum_columns_body(grid_pos(), x, out, partials, plan, chunks);
}

template <class T>
__global__ void reduce_sum_finish_kernel(const double* partials, T* out, int64_t n_out,
                                         int64_t chunks) {
  reduce_sum_finish_body(grid_pos(), partials, out, n_out, chunks);
}

template <class T>
__global__ void cumsum_lines_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                                    bool reverse) {
  cumsum_lines_body(grid_pos(), x, out, outer, n, inner, reverse);
}

template <class T>
__global__ void cumsum_block_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                                    bool reverse) {
  VMOE_DEVICE_BLOCK(blk);
  cumsum_block_body(blk, x, out, outer, n, inner, reverse);
}

template <class T>
__global__ void layer_norm_param_grad_partial_kernel(const T* x, const compute_t<T>* mean,
                                                     const compute_t<T>* rstd, const T* gy,
                                                     compute_t<T>* partials, int64_t rows,
                                                     int64_t d, int64_t chunks) {
  layer_norm_param_grad_partial_body(grid_pos(), x, mean, rstd, gy, partials, rows, d, chunks);
}

template <class T>
__global__ void layer_norm_param_grad_finish_kernel(const compute_t<T>* partials,
                                                    compute_t<T>* gscale, compute_t<T>* gbias,
                                                    int64_t d, int64_t chunks) {
  layer_norm_param_grad_finish_body<T>(grid_pos(), partials, gscale, gbias, d, chunks);
}

unsigned blocks_for(int64_t n) {
  return unsigned(element_blocks(n));
}

}  // namespace

template <class T>
void launch_sum_squares(const T* x, int64_t n, double* partials, double* out, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t blocks = sum_squares_blocks(n);
  sum_squares_partial_kernel<T><<<unsigned(blocks), kRowThreads, 0, stream>>>(x, n, partials);
  VMOE_CUDA_CHECK(cudaGetLastError());
  sum_squares_final_kernel<<<1, kRowThreads, 0, stream>>>(partials, blocks, out);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_reduce_sum(const T* x, T* out, const ReduceSumPlan& plan, double* partials,
                       cudaStream_t stream) {
  if (plan.n_out == 0) return;
  if (reduce_sum_by_rows(plan)) {
    reduce_sum_rows_kernel<T>
        <<<unsigned(row_blocks(plan.n_out)), unsigned(row_threads(plan.n_red)), 0, stream>>>(x, out,
                                                                                             plan);
    VMOE_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const int64_t chunks = column_chunks(plan.n_out, plan.n_red);
  reduce_sum_columns_kernel<T><<<blocks_for(chunks * plan.n_out), kElementThreads, 0, stream>>>(
      x, out, partials, plan, chunks);
  VMOE_CUDA_CHECK(cudaGetLastError());
  if (chunks == 1) return;
  reduce_sum_finish_kernel<T>
      <<<blocks_for(plan.n_out), kElementThreads, 0, stream>>>(partials, out, plan.n_out, chunks);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_cumsum(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool reverse,
                   cudaStream_t stream) {
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  if (cumsum_by_blocks(lines, n)) {
    cumsum_block_kernel<T>
        <<<unsigned(row_blocks(lines)), kRowThreads, 0, stream>>>(x, out, outer, n, inner, reverse);
  } else {
    cumsum_lines_kernel<T>
        <<<blocks_for(lines), kElementThreads, 0, stream>>>(x, out, outer, n, inner, reverse);
  }
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_layer_norm_param_grads(const T* x, const compute_t<T>* mean, const compute_t<T>* rstd,
                                   const T* gy, compute_t<T>* partials, compute_t<T>* gscale,
                                   compute_t<T>* gbias, int64_t rows, int64_t d,
                                   cudaStream_t stream) {
  if (d == 0) return;
  const int64_t chunks = layer_norm_param_chunks(d, rows);
  layer_norm_param_grad_partial_kernel<T><<<blocks_for(chunks * d), kElementThreads, 0, stream>>>(
      x, mean, rstd, gy, partials, rows, d, chunks);
  VMOE_CUDA_CHECK(cudaGetLastError());
  layer_norm_param_grad_finish_kernel<T>
      <<<blocks_for(d), kElementThreads, 0, stream>>>(partials, gscale, gbias, d, chunks);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

#define VMOE_REDUCE_LAUNCHERS(T)                                                                  \
  template void launch_sum_squares<T>(const T*, int64_t, double*, double*, cudaStream_t);         \
  template void launch_reduce_sum<T>(const T*, T*, const ReduceSumPlan&, double*, cudaStream_t);  \
  template void launch_cumsum<T>(const T*, T*, int64_t, int64_t, int64_t, bool, cudaStream_t);    \
  template void launch_layer_norm_param_grads<T>(                                                 \
      const T*, const compute_t<T>*, const compute_t<T>*, const T*, compute_t<T>*, compute_t<T>*, \
      compute_t<T>*, int64_t, int64_t, cudaStream_t);
VMOE_REDUCE_LAUNCHERS(float)
VMOE_REDUCE_LAUNCHERS(double)
VMOE_REDUCE_LAUNCHERS(BFloat16)
#undef VMOE_REDUCE_LAUNCHERS
template void launch_cumsum<int32_t>(const int32_t*, int32_t*, int64_t, int64_t, int64_t, bool,
                                     cudaStream_t);
template void launch_cumsum<int64_t>(const int64_t*, int64_t*, int64_t, int64_t, int64_t, bool,
                                     cudaStream_t);

}  // namespace vmoe::cuda
