// The checking macro for cuDNN calls, the library's counterpart of VMOE_CUDA_CHECK: a failed call
// throws CudnnError naming the call, the source file and line, and cuDNN's description of the
// status.
#pragma once
#include <cudnn.h>

#include <stdexcept>
#include <string>

namespace vmoe {

// Any failed cuDNN call.
class CudnnError : public std::runtime_error {
 public:
  CudnnError(cudnnStatus_t status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  cudnnStatus_t status() const { return status_; }

 private:
  cudnnStatus_t status_;
};

namespace detail {
[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file,
                                           int line) {
  throw CudnnError(status, std::string(call) + " failed (" + file + ":" + std::to_string(line) +
                               "): " + cudnnGetErrorString(status));
}
}  // namespace detail

// Evaluates a cuDNN call; on failure throws CudnnError
// "<call> failed (<file>:<line>): <cuDNN's description of the status>".
#define VMOE_CUDNN_CHECK(call)                                                          \
  do {                                                                                  \
    const cudnnStatus_t vmoe_cudnn_status_ = (call);                                    \
    if (vmoe_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                     \
      ::vmoe::detail::throw_cudnn_error(vmoe_cudnn_status_, #call, __FILE__, __LINE__); \
  } while (false)

}  // namespace vmoe
