// Per-device-type transfer counters (atomics: loader threads and the MPI progress thread copy
// too).
#include "core/transfer_counts.h"

#include <atomic>

namespace vmoe {

namespace {

struct AtomicCounts {
  std::atomic<int64_t> to_host{0}, to_host_bytes{0}, from_host{0}, from_host_bytes{0},
      synchronizations{0};
};

AtomicCounts& counts(DeviceType type) {
  static AtomicCounts all[kNumDeviceTypes];
  return all[int(type)];
}

}  // namespace

TransferCounts transfer_counts(DeviceType type) {
  const AtomicCounts& c = counts(type);
  return {c.to_host.load(), c.to_host_bytes.load(), c.from_host.load(), c.from_host_bytes.load(),
          c.synchronizations.load()};
}

void count_to_host(DeviceType type, int64_t bytes) {
  AtomicCounts& c = counts(type);
  c.to_host.fetch_add(1, std::memory_order_relaxed);
  c.to_host_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void count_from_host(DeviceType type, int64_t bytes) {
  AtomicCounts& c = counts(type);
  c.from_host.fetch_add(1, std::memory_order_relaxed);
  c.from_host_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void count_synchronization(DeviceType type) {
  counts(type).synchronizations.fetch_add(1, std::memory_order_relaxed);
}

TransferCounts TransferCounter::now() const {
  const TransferCounts c = transfer_counts(type_);
  return {c.to_host - start_.to_host, c.to_host_bytes - start_.to_host_bytes,
          c.from_host - start_.from_host, c.from_host_bytes - start_.from_host_bytes,
          c.synchronizations - start_.synchronizations};
}

}  // namespace vmoe
