// The CUDA backend's fused optimizer updates: AdamW and SGD kernels running the bodies of
// optim_bodies.h (host-tested against the CPU backend). The squared gradient norm of global-norm
// clipping is read by the kernel from device memory: no host synchronisation in the update.
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/index_kernels.h"
#include "core/cuda/optim_bodies.h"

namespace vmoe::cuda {

namespace {

template <class T>
__global__ void adamw_kernel(T* w, const T* g, T* m, T* v, const uint8_t* mask, int64_t n,
                             AdamWScalars<T> scalars, const double* grad_norm_sq, double max_norm) {
  adamw_body(grid_pos(), w, g, m, v, mask, n, scalars, grad_norm_sq, max_norm);
}

template <class T>
__global__ void sgd_kernel(T* w, const T* g, T* trace, const uint8_t* mask, int64_t n,
                           SgdScalars<T> scalars, const double* grad_norm_sq, double max_norm) {
  sgd_body(grid_pos(), w, g, trace, mask, n, scalars, grad_norm_sq, max_norm);
}

}  // namespace

template <class T>
void launch_adamw(T* w, const T* g, T* m, T* v, const uint8_t* mask, int64_t n,
                  const AdamWScalars<T>& scalars, const double* grad_norm_sq, double max_norm,
                  cudaStream_t stream) {
  if (n == 0) return;
  adamw_kernel<<<unsigned(element_blocks(n)), kElementThreads, 0, stream>>>(
      w, g, m, v, mask, n, scalars, grad_norm_sq, max_norm);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_sgd(T* w, const T* g, T* trace, const uint8_t* mask, int64_t n,
                const SgdScalars<T>& scalars, const double* grad_norm_sq, double max_norm,
                cudaStream_t stream) {
  if (n == 0) return;
  sgd_kernel<<<unsigned(element_blocks(n)), kElementThreads, 0, stream>>>(
      w, g, trace, mask, n, scalars, grad_norm_sq, max_norm);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template void launch_adamw<float>(float*, const float*, float*, float*, const uint8_t*, int64_t,
                                  const AdamWScalars<float>&, const double*, double, cudaStream_t);
template void launch_adamw<double>(double*, const double*, double*, double*, const uint8_t*,
                                   int64_t, const AdamWScalars<double>&, const double*, double,
                                   cudaStream_t);
template void launch_sgd<float>(float*, const float*, float*, const uint8_t*, int64_t,
                                const SgdScalars<float>&, const double*, double, cudaStream_t);
template void launch_sgd<double>(double*, const double*, double*, const uint8_t*, int64_t,
                                 const SgdScalars<double>&, const double*, double, cudaStream_t);

}  // namespace vmoe::cuda
