// The device side of the kernel bodies' grid (kernel_bodies.h): a thread's GridPos for the
// elementwise bodies and the Block of the row and reduction bodies (CUDA's block indices,
// __syncthreads and the block's shared scratch). For the .cu files only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/kernel_bodies.h"

namespace vmoe::cuda {

__device__ inline GridPos grid_pos() {
  return GridPos{blockIdx.x, threadIdx.x, blockDim.x, gridDim.x};
}

// The Block interface of kernel_bodies.h over a block's shared memory `scratch` (kRowThreads
// values of up to kScratchValueBytes bytes).
// Its members are __host__ __device__ so that the __host__ __device__ bodies may call them
// without a diagnostic; only the device pass ever runs them.
struct DeviceBlock {
  unsigned char* scratch_bytes;

#if defined(__CUDA_ARCH__)
  __host__ __device__ int64_t block() const {
    return blockIdx.x;
  }
  __host__ __device__ int64_t blocks() const {
    return gridDim.x;
  }
  __host__ __device__ int64_t thread() const {
    return threadIdx.x;
  }
  __host__ __device__ int64_t threads() const {
    return blockDim.x;
  }
  __host__ __device__ void sync() const {
    __syncthreads();
  }
#else
  __host__ __device__ int64_t block() const {
    return 0;
  }
  __host__ __device__ int64_t blocks() const {
    return 1;
  }
  __host__ __device__ int64_t thread() const {
    return 0;
  }
  __host__ __device__ int64_t threads() const {
    return 1;
  }
  __host__ __device__ void sync() const {}
#endif
  template <class T>
  __host__ __device__ T* scratch() const {
    return reinterpret_cast<T*>(scratch_bytes);
  }
};

// Declares the block's shared scratch and a DeviceBlock `blk` over it, at the top of a kernel.
#define VMOE_DEVICE_BLOCK(blk)                                                          \
  __shared__ alignas(16) unsigned char vmoe_scratch_[kRowThreads * kScratchValueBytes]; \
  const ::vmoe::cuda::DeviceBlock blk {                                                 \
    vmoe_scratch_                                                                       \
  }

}  // namespace vmoe::cuda
