// Storage: memory from the device's backend allocator.
#include "core/storage.h"

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>

#include "core/backend.h"

namespace vmoe {

namespace {

// "12.0 GiB (12884901888 bytes)".
std::string byte_count(size_t bytes) {
  static const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 6) {
    value /= 1024;
    ++unit;
  }
  if (unit == 0) return std::to_string(bytes) + " bytes";
  char text[64];
  std::snprintf(text, sizeof text, "%.1f %s (%zu bytes)", value, kUnits[unit], bytes);
  return text;
}

}  // namespace

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  try {
    data_ = backend_for(device).allocator->allocate(bytes);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("cannot allocate " + byte_count(bytes) + " for a tensor on " +
                             device.str() + ": out of memory");
  }
}

Storage::~Storage() {
  backend_for(device_).allocator->deallocate(data_, bytes_);
}

}  // namespace vmoe
