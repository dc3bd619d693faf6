// How a CUDA kernel reports an error in its data (an index or label out of range,
// core/kernel_errors.h): a thread that finds one writes it to the slot in device memory unless
// the slot already holds one at a lower position, so that the lowest position is reported as
// the CPU's serial check reports it, whatever order the threads ran in; the kernel treats the
// element as absent and goes on. The host reads the
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
  sigmoid_xent,
  combine  // a buffer row of the MoE combine out of range
};

struct KernelErrorSlot {
  int32_t claimed;  // 0 until a thread records an error
  KernelErrorOp op;
  int64_t value, position, lo,
      hi;        // "<op>: <what> <value> at position <position> is outside [lo, hi)"
  int32_t lock;  // held by the thread writing the record (errors are rare: no contention)
};

#if defined(__CUDACC__)
// Records the error unless one at a lower position is there (a spin lock around the record:
// independent thread scheduling, sm_70 and up, lets the lanes of a warp take it in turn).
__device__ inline void report_kernel_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t value,
                                           int64_t position, int64_t lo, int64_t hi) {
  while (atomicCAS(&slot->lock, 0, 1) != 0) {
  }
  __threadfence();
  volatile KernelErrorSlot* s = slot;
  if (s->claimed == 0 || position < s->position) {
    s->op = op;
    s->value = value;
    s->position = position;
    s->lo = lo;
    s->hi = hi;
    s->claimed = 1;
  }
  __threadfence();
  atomicExch(&slot->lock, 0);
}
#else
// The host run of a kernel body (tests): the same lowest-position rule, one thread at a time.
inline void report_kernel_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t value,
                                int64_t position, int64_t lo, int64_t hi) {
  if (slot->claimed != 0 && slot->position <= position) return;
  *slot = KernelErrorSlot{1, op, value, position, lo, hi, 0};
}
#endif

}  // namespace vmoe::cuda
