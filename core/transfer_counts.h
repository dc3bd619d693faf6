// Counts of host<->device copies and synchronisations of the devices whose memory the host
// cannot read (cpu_strict, cuda). Tests use them to prove that a training step reads nothing
// back to the host except on logging steps.
#pragma once
#include <cstdint>

#include "core/device.h"

namespace vmoe {

struct TransferCounts {
  int64_t to_host = 0;  // device -> host copies (host reads)
  int64_t to_host_bytes = 0;
  int64_t from_host = 0;  // host -> device copies
  int64_t from_host_bytes = 0;
  int64_t synchronizations = 0;
};

TransferCounts transfer_counts(DeviceType type);
// Backends call these for every copy they make.
void count_to_host(DeviceType type, int64_t bytes);
void count_from_host(DeviceType type, int64_t bytes);
void count_synchronization(DeviceType type);

// Counts between construction and now(): `TransferCounter reads(kCpuStrict); ...;
// reads.now().to_host`.
class TransferCounter {
 public:
  explicit TransferCounter(Device device)
      : type_(device.type), start_(transfer_counts(device.type)) {}
  TransferCounts now() const;

 private:
  DeviceType type_;
  TransferCounts start_;
};

}  // namespace vmoe
