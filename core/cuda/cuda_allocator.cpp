// The caching allocator over cudaMalloc / cudaFree.
#include "core/cuda/cuda_allocator.h"

#include "core/cuda/cuda_check.h"

namespace vmoe::cuda {

namespace {

// nullptr when the device is out of memory (the cache then returns its blocks and retries);
// any other failure is a CudaError.
void* raw_allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky; clear it so that later checks do not see it
    return nullptr;
  }
  VMOE_CUDA_CHECK(status);
  return p;
}

void raw_free(void* p, size_t) {
  // cudaFree waits for the device, so that no queued kernel still uses the block.
  VMOE_CUDA_CHECK(cudaFree(p));
}

}  // namespace

Allocator& device_allocator() {
  // Never destroyed: at exit the CUDA runtime may already be gone, and the process's end
  // returns the device memory anyway.
  static CachingAllocator* const allocator = new CachingAllocator({raw_allocate, raw_free});
  return *allocator;
}

}  // namespace vmoe::cuda
