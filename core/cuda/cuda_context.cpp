// The process's CUDA device, its streams and error slot (core/cuda/streams.h), kernel error
// messages, events.
#include "core/cuda/cuda_context.h"

#include <array>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "core/cuda/cuda_check.h"
#include "core/cuda/streams.h"
#include "core/device.h"
#include "core/transfer_counts.h"

namespace vmoe::cuda {

namespace {

constexpr int kNoDevice = -1;
std::atomic<int> g_process_device{kNoDevice};
std::mutex g_select_mutex;
thread_local int t_current_device = kNoDevice;

[[noreturn]] void unavailable(int index, const std::string& why) {
  throw std::runtime_error(Device{DeviceType::cuda, index}.str() + " is not available: " + why);
}

int select_process_device(int index) {
  std::lock_guard lock(g_select_mutex);
  const int chosen = g_process_device.load();
  if (chosen != kNoDevice) return chosen;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    unavailable(index, std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
  }
  if (count == 0) unavailable(index, "the CUDA runtime reports no device");
  if (index < 0 || index >= count)
    unavailable(index, "this machine has " + std::to_string(count) + " CUDA device(s), cuda:0 to " +
                           "cuda:" + std::to_string(count - 1));
  VMOE_CUDA_CHECK(cudaSetDevice(index));
  g_process_device.store(index);
  return index;
}

// What the backend keeps per device; created on the device's first use and kept for the life of
// the process (destroying streams after the runtime has shut down at exit would fail).
struct DeviceContext {
  cudaStream_t compute = nullptr;
  cudaStream_t communication = nullptr;
  KernelErrorSlot* error_slot = nullptr;  // device memory, zeroed
};

constexpr int kMaxDevices = 64;

DeviceContext& context() {
  static std::array<std::once_flag, kMaxDevices> made;
  static std::array<DeviceContext, kMaxDevices> contexts;
  int device = 0;
  VMOE_CUDA_CHECK(cudaGetDevice(&device));
  if (device < 0 || device >= kMaxDevices)
    throw std::runtime_error("CUDA device index " + std::to_string(device) + " is outside [0, " +
                             std::to_string(kMaxDevices) + ")");
  DeviceContext& c = contexts[size_t(device)];
  std::call_once(made[size_t(device)], [&c] {
    // Non-blocking: the legacy default stream (used by libraries called without a stream) must
    // not serialise against ours.
    VMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&c.compute, cudaStreamNonBlocking));
    VMOE_CUDA_CHECK(cudaStreamCreateWithFlags(&c.communication, cudaStreamNonBlocking));
    void* slot = nullptr;
    VMOE_CUDA_CHECK(cudaMalloc(&slot, sizeof(KernelErrorSlot)));
    VMOE_CUDA_CHECK(cudaMemset(slot, 0, sizeof(KernelErrorSlot)));
    c.error_slot = static_cast<KernelErrorSlot*>(slot);
  });
  return c;
}

// The op and the kind of value of each KernelErrorOp, as the CPU kernels name them.
struct ErrorWords {
  const char* op;
  const char* what;
};

ErrorWords error_words(KernelErrorOp op) {
  switch (op) {
    case KernelErrorOp::index_select:
      return {"index_select", "index"};
    case KernelErrorOp::index_add:
      return {"index_add", "index"};
    case KernelErrorOp::gather:
      return {"gather", "index"};
    case KernelErrorOp::gather_backward:
      return {"gather_backward", "index"};
    case KernelErrorOp::one_hot:
      return {"one_hot", "index"};
    case KernelErrorOp::assign_slots:
      return {"assign_slots", "expert"};
    case KernelErrorOp::assign_slots_order:
      return {"assign_slots", "position"};
    case KernelErrorOp::softmax_xent:
      return {"softmax_cross_entropy", "label"};
    case KernelErrorOp::sigmoid_xent:
      return {"sigmoid_cross_entropy", "label"};
    case KernelErrorOp::combine:
      return {"combine", "row"};
    case KernelErrorOp::none:
      break;
  }
  return {"unknown kernel", "value"};
}

}  // namespace

void use_device(int index) {
  if (t_current_device == index) return;
  const int chosen = select_process_device(index);
  if (index != chosen)
    throw std::runtime_error(Device{DeviceType::cuda, index}.str() + " requested, but this " +
                             "process uses " + Device{DeviceType::cuda, chosen}.str() +
                             " (one CUDA device per process)");
  // The current device is per host thread: loader threads get it here on their first copy.
  VMOE_CUDA_CHECK(cudaSetDevice(index));
  t_current_device = index;
}

cudaStream_t compute_stream() {
  return context().compute;
}

cudaStream_t communication_stream() {
  return context().communication;
}

KernelErrorSlot* kernel_error_slot() {
  return context().error_slot;
}

std::string format_kernel_error(const KernelErrorSlot& slot) {
  if (slot.claimed == 0) return "";
  const ErrorWords w = error_words(slot.op);
  return std::string(w.op) + ": " + w.what + " " + std::to_string(slot.value) + " at position " +
         std::to_string(slot.position) + " is outside [" + std::to_string(slot.lo) + ", " +
         std::to_string(slot.hi) + ")";
}

std::string take_kernel_error() {
  const DeviceContext& c = context();
  KernelErrorSlot slot{};
  count_to_host(DeviceType::cuda, int64_t(sizeof slot));
  VMOE_CUDA_CHECK(
      cudaMemcpyAsync(&slot, c.error_slot, sizeof slot, cudaMemcpyDeviceToHost, c.compute));
  VMOE_CUDA_CHECK(cudaStreamSynchronize(c.compute));
  if (slot.claimed == 0) return "";
  VMOE_CUDA_CHECK(cudaMemsetAsync(c.error_slot, 0, sizeof slot, c.compute));
  return format_kernel_error(slot);
}

CudaEvent::CudaEvent() {
  VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
}

CudaEvent::~CudaEvent() {
  cudaEventDestroy(event_);  // no throw from a destructor; a failure here changes nothing
}

void CudaEvent::record(cudaStream_t stream) {
  VMOE_CUDA_CHECK(cudaEventRecord(event_, stream));
}

void CudaEvent::make_wait(cudaStream_t stream) const {
  VMOE_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}

void CudaEvent::synchronize() const {
  VMOE_CUDA_CHECK(cudaEventSynchronize(event_));
}

}  // namespace vmoe::cuda
