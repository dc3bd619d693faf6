// Size-class caching allocator.
#include <algorithm>
#include <bit>
#include <new>

#include "core/allocator.h"

namespace vmoe {

size_t CachingAllocator::block_size(size_t bytes) {
  if (bytes <= 512) return bytes <= 64 ? 64 : (bytes + 63) / 64 * 64;
  const int top = std::bit_width(bytes - 1) - 1;  // 2^top < bytes <= 2^(top+1)
  const size_t step = size_t(1) << (top - 3);
  return (bytes + step - 1) / step * step;
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard lock(mutex_);
  release_cached_locked();
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = block_size(bytes);
  std::lock_guard lock(mutex_);
  ++stats_.requests;
  void* p = nullptr;
  if (auto it = free_blocks_.find(size); it != free_blocks_.end()) {
    p = it->second;
    free_blocks_.erase(it);
    stats_.cached_bytes -= int64_t(size);
  } else {
    ++stats_.system_allocations;
    p = raw_.allocate(size);
    if (!p && !free_blocks_.empty()) {
      // Out of memory with blocks of other sizes cached: give them back and try once more.
      release_cached_locked();
      p = raw_.allocate(size);
    }
    if (!p) throw std::bad_alloc();
  }
  stats_.in_use_bytes += int64_t(size);
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes)
    stats_.peak_in_use_bytes = stats_.in_use_bytes;
  return p;
}

void CachingAllocator::deallocate(void* p, size_t bytes) {
  if (!p) return;
  const size_t size = block_size(bytes);
  std::lock_guard lock(mutex_);
  stats_.in_use_bytes -= int64_t(size);
  // The cache never holds more than the larger of 256 MiB and the peak in use, so a program
  // whose sizes keep changing stays within twice its peak.
  const int64_t limit = std::max<int64_t>(int64_t(256) << 20, stats_.peak_in_use_bytes);
  if (stats_.cached_bytes + int64_t(size) > limit) {
    raw_.free(p, size);
    return;
  }
  stats_.cached_bytes += int64_t(size);
  free_blocks_.emplace(size, p);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard lock(mutex_);
  stats_.peak_in_use_bytes = stats_.in_use_bytes;
}

void CachingAllocator::empty_cache() {
  std::lock_guard lock(mutex_);
  release_cached_locked();
}

void CachingAllocator::release_cached_locked() {
  for (auto& [size, p] : free_blocks_)
    raw_.free(p, size);
  free_blocks_.clear();
  stats_.cached_bytes = 0;
}

}  // namespace vmoe
