// The memory of CUDA tensors: the size-class CachingAllocator (core/allocator.h) over cudaMalloc
// and cudaFree, so that a training loop reaches cudaMalloc only in its first steps. Its stats
// (peak in use, cached = memory held but unused) are the `vmoe train` device memory metrics.
#pragma once
#include "core/allocator.h"

namespace vmoe::cuda {

// The process's CUDA allocator (its device is the one cuda::use_device selected). Every block
// is 256-byte aligned (cudaMalloc's guarantee), which the GEMMs' alignment choice relies on.
Allocator& device_allocator();

}  // namespace vmoe::cuda
