// The process-wide GEMM FLOP counter.
#include "core/flop_counter.h"

#include <atomic>
#include <stdexcept>

namespace vmoe {

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_flops{0};
}  // namespace

void count_flops(int64_t flops) {
  if (g_counting.load(std::memory_order_relaxed))
    g_flops.fetch_add(flops, std::memory_order_relaxed);
}

FlopCount::FlopCount() {
  if (g_counting.exchange(true)) throw std::logic_error("FlopCount: one is already counting");
  g_flops.store(0);
}

FlopCount::~FlopCount() {
  g_counting.store(false);
}

int64_t FlopCount::flops() const {
  return g_flops.load();
}

}  // namespace vmoe
