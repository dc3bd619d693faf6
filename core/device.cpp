// Device names and the default device.
#include "core/device.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <stdexcept>

namespace vmoe {

std::string Device::str() const {
  switch (type) {
    case DeviceType::cpu:
      return "cpu";
    case DeviceType::cpu_strict:
      return "cpu_strict";
    case DeviceType::cuda:
      return "cuda:" + std::to_string(index);
  }
  return "?";
}

Device parse_device(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "cpu") return kCpu;
  if (t == "cpu_strict") return kCpuStrict;
  if (t == "cuda") return {DeviceType::cuda, 0};
  if (t.rfind("cuda:", 0) == 0 && t.size() > 5 && t.size() <= 8 &&
      std::all_of(t.begin() + 5, t.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return {DeviceType::cuda, std::stoi(t.substr(5))};
  }
  throw std::invalid_argument("unknown device '" + text.substr(0, 40) +
                              "', expected cpu, cpu_strict, cuda or cuda:N");
}

namespace {

// The device as one word (type in the high half, index in the low), so that the atomic is
// lock-free on every compiler without libatomic.
std::atomic<int64_t> g_default_device{0};

int64_t encode(Device d) {
  return (int64_t(d.type) << 32) | int64_t(uint32_t(d.index));
}

}  // namespace

Device default_device() {
  const int64_t v = g_default_device.load(std::memory_order_relaxed);
  return {DeviceType(v >> 32), int(uint32_t(v))};
}

void set_default_device(Device device) {
  g_default_device.store(encode(device), std::memory_order_relaxed);
}

}  // namespace vmoe
