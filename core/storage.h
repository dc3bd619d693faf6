// A reference-counted buffer on one device, allocated through that device's backend (its
// caching allocator). Tensors are views into a Storage. data() is a device pointer: only the
// backend's kernels and copies may dereference it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace vmoe {

class Storage {
 public:
  // Allocates `bytes` (uninitialised) on `device`.
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

}  // namespace vmoe
