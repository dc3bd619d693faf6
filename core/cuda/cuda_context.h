// The process's CUDA device and what the backend keeps per device: the device is chosen on first
// use (one device per process: a rank uses the GPU it was given), the streams and the kernel
// error slot of core/cuda/streams.h are created with it, and CudaEvent orders work across the
// compute and communication streams. Defined in cuda_context.cpp.
#pragma once
#include <cuda_runtime_api.h>

#include <string>

#include "core/cuda/kernel_error_slot.h"

namespace vmoe::cuda {

// Makes cuda:`index` this thread's current device. The first call selects the process's device;
// a later call naming another index is an error (one device per process), as is a machine
// without a CUDA device: "cuda:0 is not available: <the runtime's reason>". Cheap after the
// first call on each thread (backend_for calls it for every CUDA op).
void use_device(int index);

// The message of a recorded kernel error, the CPU backend's wording:
// "index_select: index 9 at position 3 is outside [-1, 5)". "" when the slot is unclaimed.
std::string format_kernel_error(const KernelErrorSlot& slot);

// Reads the current device's error slot (one counted device -> host copy), clears it when it was
// claimed, and returns its message ("" when no kernel recorded an error).
std::string take_kernel_error();

// An event (no timing): record it on one stream, make another stream wait for it.
class CudaEvent {
 public:
  CudaEvent();
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void record(cudaStream_t stream);
  // Work queued on `stream` after this call starts after the recorded work has finished.
  void make_wait(cudaStream_t stream) const;
  // Blocks the host until the recorded work has finished.
  void synchronize() const;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace vmoe::cuda
