// Storage allocation for the CPU (aligned for AVX-512 loads).
#include "core/storage.h"

#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

namespace vmoe {

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.type != DeviceType::cpu) {
    throw std::runtime_error("device " + device.str() + " is not available in this build");
  }
  size_t rounded = (bytes + 63) / 64 * 64;
  data_ = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!data_) throw std::bad_alloc();
}

Storage::~Storage() {
  std::free(data_);
}

}  // namespace vmoe
