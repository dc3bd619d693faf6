// The chunks of the CPU's column sums over rows (reduce_sum, core/cpu/reduce.cpp): each chunk's
// rows summed in double in row order, the chunks' sums added in order, so that the result does
// not depend on the thread count. Kernels that fuse a bias gradient into another pass
// (core/cpu/expert_mlp.cpp) use the same chunks and give the same bits.
#pragma once
#include <algorithm>
#include <cstdint>

namespace vmoe::cpu {

// Rows per chunk for a sum over r rows: fixed by r alone.
inline int64_t sum_chunk_rows(int64_t r) {
  return std::max<int64_t>(256, (r + 63) / 64);
}

}  // namespace vmoe::cpu
