// The CUDA MoE combine kernels: each runs a body of combine_bodies.h at its grid position (the
// tests run the same bodies on the host).
#include "core/cuda/combine_bodies.h"
#include "core/cuda/combine_kernels.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"

namespace vmoe::cuda {

namespace {

unsigned blocks_for(int64_t n) {
  return unsigned(element_blocks(n));
}

template <class T>
__global__ void combine_kernel(const T* y, const T* weights, const int64_t* rows, T* out, int64_t n,
                               int64_t d, int64_t k, int64_t r) {
  combine_body(grid_pos(), y, weights, rows, out, n, d, k, r);
}

template <class T>
__global__ void combine_weighted_rows_kernel(const T* weights, const T* gout, T* weighted,
                                             int64_t n, int64_t d, int64_t k) {
  combine_weighted_rows_body(grid_pos(), weights, gout, weighted, n, d, k);
}

template <class T>
__global__ void combine_weight_grad_kernel(const T* y, const int64_t* rows, const T* gout,
                                           T* gweights, int64_t n, int64_t d, int64_t k,
                                           int64_t r) {
  combine_weight_grad_body(grid_pos(), y, rows, gout, gweights, n, d, k, r);
}

}  // namespace

template <class T>
void launch_combine(const T* y, const T* weights, const int64_t* rows, T* out, int64_t n, int64_t d,
                    int64_t k, int64_t r, cudaStream_t stream) {
  if (n * d == 0) return;
  combine_kernel<T>
      <<<blocks_for(n * d), kElementThreads, 0, stream>>>(y, weights, rows, out, n, d, k, r);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_combine_weighted_rows(const T* weights, const T* gout, T* weighted, int64_t n,
                                  int64_t d, int64_t k, cudaStream_t stream) {
  if (n * k * d == 0) return;
  combine_weighted_rows_kernel<T>
      <<<blocks_for(n * k * d), kElementThreads, 0, stream>>>(weights, gout, weighted, n, d, k);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_combine_weight_grad(const T* y, const int64_t* rows, const T* gout, T* gweights,
                                int64_t n, int64_t d, int64_t k, int64_t r, cudaStream_t stream) {
  if (n * k == 0) return;
  combine_weight_grad_kernel<T>
      <<<blocks_for(n * k), kElementThreads, 0, stream>>>(y, rows, gout, gweights, n, d, k, r);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

#define VMOE_COMBINE_LAUNCHERS(T)                                                                  \
  template void launch_combine<T>(const T*, const T*, const int64_t*, T*, int64_t, int64_t,        \
                                  int64_t, int64_t, cudaStream_t);                                 \
  template void launch_combine_weighted_rows<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, \
                                                cudaStream_t);                                     \
  template void launch_combine_weight_grad<T>(const T*, const int64_t*, const T*, T*, int64_t,     \
                                              int64_t, int64_t, int64_t, cudaStream_t);
VMOE_COMBINE_LAUNCHERS(float)
VMOE_COMBINE_LAUNCHERS(double)
#undef VMOE_COMBINE_LAUNCHERS

}  // namespace vmoe::cuda
