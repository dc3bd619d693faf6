// How a CUDA kernel reports an error in its data (an index or label out of range,
// core/kernel_errors.h): the first thread to find one claims the slot in device memory and
// writes what it found; the kernel treats the element as absent and goes on. The host reads the
// slot at its next check_kernel_errors(cuda) and throws the message that format_kernel_error
// builds, the same text the CPU backend throws. Host and device code alike (nvcc and g++).
#pragma once
#include <cstdint>

#include "core/elementwise_math.h"  // VMOE_HD

namespace vmoe::cuda {

// The kernel and the kind of value that was out of range.
enum class KernelErrorOp : int32_t {
  none = 0,
  index_select,
  index_add,
  gather,
  gather_backward,
  one_hot,
  assign_slots,        // an expert index out of range
  assign_slots_order,  // a BPR order entry out of its group
  softmax_xent,
  sigmoid_xent
};

struct KernelErrorSlot {
  int32_t claimed;  // 0 until a thread claims the slot
  KernelErrorOp op;
  int64_t value, position, lo,
      hi;  // "<op>: <what> <value> at position <position> is outside [lo, hi)"
};

#if defined(__CUDACC__)
// Claims the slot (first error wins) and records it.
__device__ inline void report_kernel_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t value,
                                           int64_t position, int64_t lo, int64_t hi) {
  if (atomicCAS(&slot->claimed, 0, 1) != 0) return;
  slot->op = op;
  slot->value = value;
  slot->position = position;
  slot->lo = lo;
  slot->hi = hi;
  __threadfence();
}
#else
// The host run of a kernel body (tests): the same first-wins rule without atomics.
inline void report_kernel_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t value,
                                int64_t position, int64_t lo, int64_t hi) {
  if (slot->claimed != 0) return;
  *slot = KernelErrorSlot{1, op, value, position, lo, hi};
}
#endif

}  // namespace vmoe::cuda
