// Strided iteration for the CUDA elementwise kernels: NT tensors of one shape, each with its own
// strides (a broadcast view has stride 0), described by a small POD that the host computes and
// passes by value to a kernel. Dimensions of size 1 are dropped and dimensions contiguous in
// every tensor are merged, so most views end up with rank 1 or 2. A thread turns the linear
// (row-major) index of an element into one offset per tensor. Host and device code alike.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/elementwise_math.h"  // VMOE_HD

namespace vmoe::cuda {

// The most dimensions a view may have after merging.
inline constexpr int kMaxStridedDims = 8;

template <int NT>
struct StridedIndex {
  int32_t rank = 0;                           // 0: a single element at offset 0
  int64_t sizes[kMaxStridedDims] = {};        // merged sizes, outermost first
  int64_t strides[NT][kMaxStridedDims] = {};  // per tensor, in elements
};

// The offsets (in elements) of linear element i in each of the NT tensors.
template <int NT>
VMOE_HD inline void strided_offsets(const StridedIndex<NT>& s, int64_t i, int64_t (&off)[NT]) {
  for (int t = 0; t < NT; ++t)
    off[t] = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t size = s.sizes[d];
    const int64_t at = d == 0 ? i : i % size;
    if (d > 0) i /= size;
    for (int t = 0; t < NT; ++t)
      off[t] += at * s.strides[t][d];
  }
}

// Whether every tensor is the plain contiguous [n] run (offset = linear index).
template <int NT>
VMOE_HD inline bool is_dense(const StridedIndex<NT>& s) {
  if (s.rank == 0) return true;
  if (s.rank != 1) return false;
  for (int t = 0; t < NT; ++t)
    if (s.strides[t][0] != 1) return false;
  return true;
}

// Host side: merges `shape` with each tensor's strides (as the CPU backend's for_each_run);
// throws std::invalid_argument when more than kMaxStridedDims dimensions remain.
template <int NT>
inline StridedIndex<NT> make_strided_index(const std::vector<int64_t>& shape,
                                           const std::vector<int64_t>* const (&strides)[NT]) {
  StridedIndex<NT> s;
  std::vector<int64_t> sizes;
  std::vector<int64_t> st[NT];
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!sizes.empty()) {
      bool mergeable = true;
      for (int t = 0; t < NT; ++t)
        if (st[t].back() != (*strides[t])[d] * shape[d]) mergeable = false;
      if (mergeable) {
        sizes.back() *= shape[d];
        for (int t = 0; t < NT; ++t)
          st[t].back() = (*strides[t])[d];
        continue;
      }
    }
    sizes.push_back(shape[d]);
    for (int t = 0; t < NT; ++t)
      st[t].push_back((*strides[t])[d]);
  }
  if (sizes.size() > size_t(kMaxStridedDims)) {
    throw std::invalid_argument(
        "cuda strided kernel: the view has " + std::to_string(sizes.size()) +
        " dimensions after merging, at most " + std::to_string(kMaxStridedDims) + " are supported");
  }
  s.rank = int32_t(sizes.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    s.sizes[d] = sizes[d];
    for (int t = 0; t < NT; ++t)
      s.strides[t][d] = st[t][d];
  }
  return s;
}

}  // namespace vmoe::cuda
