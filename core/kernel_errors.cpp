// Per-device-type error flags of the kernels.
#include "core/kernel_errors.h"

#include <mutex>
#include <stdexcept>

#include "core/transfer_counts.h"
#include "vmoe_build_features.h"  // VMOE_WITH_CUDA
#if VMOE_WITH_CUDA
#include "core/cuda/cuda_context.h"
#endif

namespace vmoe {

namespace {

struct ErrorFlag {
  std::mutex mutex;
  std::string first;  // empty: no error
};

ErrorFlag& flag(DeviceType type) {
  static ErrorFlag flags[kNumDeviceTypes];
  return flags[int(type)];
}

}  // namespace

void kernel_error(Device device, const std::string& message) {
  if (device.host_readable()) throw std::invalid_argument(message);
  ErrorFlag& f = flag(device.type);
  std::lock_guard lock(f.mutex);
  if (f.first.empty()) f.first = message;
}

void check_kernel_errors(Device device) {
  if (device.host_readable()) return;
  ErrorFlag& f = flag(device.type);
  std::string message;
  {
    std::lock_guard lock(f.mutex);
    message.swap(f.first);
  }
#if VMOE_WITH_CUDA
  if (device.type == DeviceType::cuda) {
    // The CUDA kernels' slot (core/cuda/kernel_error_slot.h): read (one counted copy) and
    // cleared; an error host code recorded above came first.
    cuda::use_device(device.index);
    const std::string recorded = cuda::take_kernel_error();
    if (message.empty()) message = recorded;
    if (!message.empty()) throw std::invalid_argument(message);
    return;
  }
#endif
  // The flag lives in device memory: reading it is one small device -> host copy.
  count_to_host(device.type, sizeof(int32_t));
  if (!message.empty()) throw std::invalid_argument(message);
}

}  // namespace vmoe
