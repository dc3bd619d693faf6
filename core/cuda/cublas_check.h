// The checking macro for cuBLAS / cuBLASLt calls, the library's counterpart of VMOE_CUDA_CHECK: a
// failed call throws CublasError naming the call, the source file and line, and cuBLAS's own name
// and description of the status.
#pragma once
#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "core/cuda/cublaslt_library.h"

namespace vmoe {

// Any failed cuBLAS or cuBLASLt call.
class CublasError : public std::runtime_error {
 public:
  CublasError(cublasStatus_t status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  cublasStatus_t status() const { return status_; }

 private:
  cublasStatus_t status_;
};

namespace detail {
[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
  throw CublasError(status, std::string(call) + " failed (" + file + ":" + std::to_string(line) +
                                "): " + cuda::cublaslt().cublasLtGetStatusName(status) + ": " +
                                cuda::cublaslt().cublasLtGetStatusString(status));
}
}  // namespace detail

// Evaluates a cuBLAS(Lt) call; on failure throws CublasError
// "<call> failed (<file>:<line>): <status name>: <description>".
#define VMOE_CUBLAS_CHECK(call)                                                           \
  do {                                                                                    \
    const cublasStatus_t vmoe_cublas_status_ = (call);                                    \
    if (vmoe_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                     \
      ::vmoe::detail::throw_cublas_error(vmoe_cublas_status_, #call, __FILE__, __LINE__); \
  } while (false)

}  // namespace vmoe
