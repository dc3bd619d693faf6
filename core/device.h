// Where a tensor's storage lives. `cpu` is host memory that host code may read directly;
// `cpu_strict` is the test device: host memory that only its backend may touch (kernels are
// the CPU kernels reached through the backend table, every host<->device copy is counted),
// so that code reading device memory behind the backend's back fails on machines without a
// GPU; `cuda` is a GPU.
#pragma once
#include <string>

namespace vmoe {

enum class DeviceType : unsigned char { cpu, cpu_strict, cuda };
inline constexpr int kNumDeviceTypes = 3;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device&) const = default;
  // Whether host code may dereference this device's memory (Tensor::data<T>()).
  bool host_readable() const { return type == DeviceType::cpu; }
  std::string str() const;
};

inline constexpr Device kCpu{DeviceType::cpu, 0};
inline constexpr Device kCpuStrict{DeviceType::cpu_strict, 0};

// "cpu", "cpu_strict", "cuda", "cuda:N" (case-insensitive); anything else is an
// std::invalid_argument naming the text.
Device parse_device(const std::string& text);

// The device of tensors created without an explicit one. kCpu unless changed: the test
// mains set it from VMOE_TEST_DEVICE so that the whole suite also runs on the strict device.
Device default_device();
void set_default_device(Device device);

}  // namespace vmoe
