// The CUDA backend's table (core/backend.h): the process's CUDA device memory (caching
// allocator, pinned staging copies on the compute stream), and the entries of core/cuda/entries.h.
// backend_for(cuda:N) returns it after cuda::use_device(N).
#pragma once
#include "core/backend.h"

namespace vmoe::cuda {

const Backend& cuda_backend();

}  // namespace vmoe::cuda
