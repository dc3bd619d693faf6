// Device memory allocation behind every Storage. A backend hands out memory through an
// Allocator; CachingAllocator keeps freed blocks by size class and reuses them, so that a
// training loop that allocates the same shapes every step reaches the system allocator (or
// cudaMalloc) only in its first steps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace vmoe {

struct AllocatorStats {
  int64_t in_use_bytes = 0;        // held by live storages (rounded block sizes)
  int64_t peak_in_use_bytes = 0;   // since start or reset_peak()
  int64_t cached_bytes = 0;        // freed blocks kept for reuse
  int64_t requests = 0;            // allocate() calls
  int64_t system_allocations = 0;  // requests the cache could not serve
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // `bytes` may be 0; the result is never null (failure throws std::bad_alloc).
  virtual void* allocate(size_t bytes) = 0;
  // `bytes` as passed to allocate().
  virtual void deallocate(void* p, size_t bytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns every cached block to the system.
  virtual void empty_cache() = 0;
};

// The raw allocation functions of one device: what the cache calls on a miss.
struct RawAllocation {
  void* (*allocate)(size_t bytes);  // nullptr when out of memory
  void (*free)(void* p, size_t bytes);
};

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(RawAllocation raw) : raw_(raw) {}
  ~CachingAllocator() override;
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;

  // The size class of a request: 8 classes per power of two above 512 bytes (at most 12.5%
  // more than asked), multiples of 64 below.
  static size_t block_size(size_t bytes);

 private:
  void release_cached_locked();

  RawAllocation raw_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_blocks_;  // block size -> block
  AllocatorStats stats_;
};

}  // namespace vmoe
