// The streams and the error slot of the current CUDA device (cudaGetDevice), created on first
// use: every kernel and library call of the backend runs on the compute stream; NCCL runs on the
// communication stream, ordered against compute by events. Defined in cuda_context.cpp.
#pragma once
#include <cuda_runtime_api.h>

#include "core/cuda/kernel_error_slot.h"

namespace vmoe::cuda {

cudaStream_t compute_stream();
cudaStream_t communication_stream();
// The device memory where kernels record the first data error they find (kernel_error_slot.h);
// check_kernel_errors(cuda) reads and clears it.
KernelErrorSlot* kernel_error_slot();

}  // namespace vmoe::cuda
