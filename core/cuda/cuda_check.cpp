// CudaError messages for VMOE_CUDA_CHECK.
#include "core/cuda/cuda_check.h"

namespace vmoe::detail {

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  // The runtime's error state is sticky only for launch failures; clear the last error so that a
  // caller that recovers (e.g. "no device") does not see it again.
  cudaGetLastError();
  throw CudaError(code, std::string(call) + " failed (" + file + ":" + std::to_string(line) +
                            "): " + cudaGetErrorName(code) + ": " + cudaGetErrorString(code));
}

}  // namespace vmoe::detail
