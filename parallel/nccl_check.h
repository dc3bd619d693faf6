// The one checking macro for NCCL calls (VMOE_NCCL_CHECK), the exception it throws, and the
// host-side mappings of vmoe's dtypes and reductions to NCCL's. A failed call's message names
// the call, the source file and line, NCCL's description of the result code and NCCL's own text
// about the last error (which usually says which argument or peer was wrong).
#pragma once
#include <nccl.h>

#include <stdexcept>
#include <string>

#include "core/dtype.h"
#include "parallel/communicator.h"

namespace vmoe {

// Any failed NCCL call, a failed or hung NCCL operation, or an NCCL communicator that cannot
// be made (no CUDA device, ...).
class NcclError : public std::runtime_error {
 public:
  NcclError(ncclResult_t code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ncclResult_t code() const { return code_; }

 private:
  ncclResult_t code_;
};

namespace detail {

// "NCCL call failed: <call>: <ncclGetErrorString> (<ncclGetLastError>) at <file>:<line>",
// one line.
std::string nccl_error_text(ncclResult_t code, const char* call, const char* file, int line);
[[noreturn]] void throw_nccl_error(ncclResult_t code, const char* call, const char* file, int line);

}  // namespace detail

// The NCCL datatype of a dtype (bf16 is ncclBfloat16: NCCL reduces it natively).
ncclDataType_t nccl_data_type(DType dtype);
// ncclSum / ncclMax / ncclMin.
ncclRedOp_t nccl_reduce_op(ReduceOp op);

}  // namespace vmoe

// Evaluates an NCCL call; unless it returns ncclSuccess, throws vmoe::NcclError with one line
// naming the call, NCCL's description of the result, its last-error text, the file and line.
#define VMOE_NCCL_CHECK(call)                                                     \
  do {                                                                            \
    const ncclResult_t vmoe_nccl_rc_ = (call);                                    \
    if (vmoe_nccl_rc_ != ncclSuccess) {                                           \
      ::vmoe::detail::throw_nccl_error(vmoe_nccl_rc_, #call, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)

// The same for a call on a non-blocking communicator (ncclConfig_t::blocking = 0), where
// ncclInProgress means "started, completes in the background" (the caller then polls
// ncclCommGetAsyncError until it leaves ncclInProgress).
#define VMOE_NCCL_CHECK_STARTED(call)                                             \
  do {                                                                            \
    const ncclResult_t vmoe_nccl_rc_ = (call);                                    \
    if (vmoe_nccl_rc_ != ncclSuccess && vmoe_nccl_rc_ != ncclInProgress) {        \
      ::vmoe::detail::throw_nccl_error(vmoe_nccl_rc_, #call, __FILE__, __LINE__); \
    }                                                                             \
  } while (false)
