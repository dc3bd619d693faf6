// The CUDA backend's elementwise and row kernels: each runs the __host__ __device__ bodies of
// kernel_bodies.h at its grid position; the tests run the same bodies on the host.
#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/kernel_bodies.h"
#include "core/cuda/kernels.h"

namespace vmoe::cuda {

namespace {

constexpr int kElementThreads = 256;
// Enough blocks to fill an H200 (132 SMs) several times; the grid-stride loop does the rest.
constexpr int64_t kMaxElementBlocks = 132 * 16;

__device__ GridPos grid_pos() {
  return GridPos{blockIdx.x, threadIdx.x, blockDim.x, gridDim.x};
}

int element_blocks(int64_t n) {
  return int(
      std::clamp<int64_t>((n + kElementThreads - 1) / kElementThreads, 1, kMaxElementBlocks));
}

// The block's tree reduction of `value` (kernel_bodies.h), result broadcast to every thread.
template <class Op>
__device__ float block_reduce(float value, float* partials, Op op) {
  partials[threadIdx.x] = value;
  __syncthreads();
  for (int64_t stride = blockDim.x / 2; stride > 0; stride /= 2) {
    tree_reduce_step(partials, threadIdx.x, stride, op);
    __syncthreads();
  }
  const float result = partials[0];
  __syncthreads();  // partials is reused by the next reduction
  return result;
}

__global__ void unary_kernel(UnaryOp op, const float* x, float* y, int64_t n) {
  unary_body(grid_pos(), op, x, y, n);
}

__global__ void unary_backward_kernel(UnaryOp op, const float* x, const float* y, const float* gy,
                                      float* gx, int64_t n) {
  unary_backward_body(grid_pos(), op, x, y, gy, gx, n);
}

__global__ void softmax_rows_kernel(const float* x, float* y, int64_t n, SoftmaxKind kind) {
  __shared__ float partials[kRowThreads];
  const float* row = x + blockIdx.x * n;
  const float m =
      block_reduce(softmax_partial_max(row, n, threadIdx.x, blockDim.x), partials, MaxOp{});
  const float s =
      block_reduce(softmax_partial_sum(row, n, m, threadIdx.x, blockDim.x), partials, SumOp{});
  softmax_write(row, y + blockIdx.x * n, n, m, s, kind, threadIdx.x, blockDim.x);
}

__global__ void layer_norm_rows_kernel(const float* x, const float* scale, const float* bias,
                                       float eps, float* y, float* mean, float* rstd, int64_t d) {
  __shared__ float partials[kRowThreads];
  const float* row = x + blockIdx.x * d;
  const float mu =
      block_reduce(layer_norm_partial_sum(row, d, threadIdx.x, blockDim.x), partials, SumOp{}) /
      float(d);
  const float var =
      block_reduce(layer_norm_partial_var(row, d, mu, threadIdx.x, blockDim.x), partials, SumOp{}) /
      float(d);
  const float rs = 1.0f / sqrtf(var + eps);
  layer_norm_write(row, scale, bias, y + blockIdx.x * d, d, mu, rs, threadIdx.x, blockDim.x);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = rs;
  }
}

}  // namespace

void launch_unary(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  unary_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(op, x, y, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_unary_backward(UnaryOp op, const float* x, const float* y, const float* gy, float* gx,
                           int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  unary_backward_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(op, x, y, gy, gx, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_softmax_rows(const float* x, float* y, int64_t rows, int64_t n, SoftmaxKind kind,
                         cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  softmax_rows_kernel<<<unsigned(rows), kRowThreads, 0, stream>>>(x, y, n, kind);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_layer_norm_rows(const float* x, const float* scale, const float* bias, float eps,
                            float* y, float* mean, float* rstd, int64_t rows, int64_t d,
                            cudaStream_t stream) {
  if (rows == 0 || d == 0) return;
  layer_norm_rows_kernel<<<unsigned(rows), kRowThreads, 0, stream>>>(x, scale, bias, eps, y, mean,
                                                                     rstd, d);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace vmoe::cuda
