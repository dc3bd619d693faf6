// Where a tensor's storage lives. Part of every tensor from the start so that a CUDA backend
// slots in behind the same ops.
#pragma once
#include <string>

namespace vmoe {

enum class DeviceType : unsigned char { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  bool operator==(const Device&) const = default;
  std::string str() const {
    return type == DeviceType::cpu ? "cpu" : "cuda:" + std::to_string(index);
  }
};

inline constexpr Device kCpu{DeviceType::cpu, 0};

}  // namespace vmoe
