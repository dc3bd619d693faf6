// The model's own FLOP count: every matrix product the op layer issues adds 2 m n k (times the
// batch) here, forward and backward alike, so a benchmark that counts one training step gets the
// FLOPs the model really computes (at its capacity, with its backward), not an estimate from a
// separate formula. Off unless a FlopCount is alive; counting costs one relaxed atomic add.
#pragma once
#include <cstdint>

namespace vmoe {

// Adds `flops` to the live FlopCount, if any (called by the op layer for every GEMM).
void count_flops(int64_t flops);

// Counts the FLOPs issued between construction and flops(). One at a time per process.
class FlopCount {
 public:
  FlopCount();
  ~FlopCount();
  FlopCount(const FlopCount&) = delete;
  FlopCount& operator=(const FlopCount&) = delete;
  int64_t flops() const;
};

}  // namespace vmoe
