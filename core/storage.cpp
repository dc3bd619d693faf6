// Storage: memory from the device's backend allocator.
#include "core/storage.h"

#include "core/backend.h"

namespace vmoe {

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  data_ = backend_for(device).allocator->allocate(bytes);
}

Storage::~Storage() {
  backend_for(device_).allocator->deallocate(data_, bytes_);
}

}  // namespace vmoe
