// The checking macro for CUDA runtime calls: a failed call throws CudaError naming the call, the
// source file and line, and the runtime's own description of the error. The cuBLAS, cuDNN and
// NCCL checks join it with the backend that links those libraries.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace vmoe {

// Any failed CUDA runtime call.
class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

namespace detail {
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
}  // namespace detail

// Evaluates a CUDA runtime call; on failure throws CudaError
// "<call> failed (<file>:<line>): <error name>: <description>".
#define VMOE_CUDA_CHECK(call)                                                         \
  do {                                                                                \
    const cudaError_t vmoe_cuda_status_ = (call);                                     \
    if (vmoe_cuda_status_ != cudaSuccess)                                             \
      ::vmoe::detail::throw_cuda_error(vmoe_cuda_status_, #call, __FILE__, __LINE__); \
  } while (false)

}  // namespace vmoe
