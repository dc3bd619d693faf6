// Reductions over one contiguous row, shared by the CPU softmax, its backward, layer norm and the
// fused attention (which must repeat the softmax's arithmetic to the last bit). Each keeps one
// vector of interleaved partial results and combines them in a fixed order at the end: the loops
// vectorise without -ffast-math, and the result depends only on the row, not on the machine's
// vector width.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/cpu/fast_math.h"

namespace vmoe::cpu {

// One 32-byte GCC / Clang vector (one AVX2 register: 8 f32 or 4 f64 lanes). Plain arrays of
// lanes stay scalar after scalar replacement (vmaxss per lane); the vector type does not.
template <class T>
struct Lanes;
template <>
struct Lanes<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Lanes<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <class T>
inline constexpr int64_t kRowLanes = int64_t(32 / sizeof(T));

template <class T>
[[gnu::always_inline]] inline typename Lanes<T>::type load_lanes(const T* p) {
  typename Lanes<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The lanes' sum in a fixed pairwise order.
template <class T>
[[gnu::always_inline]] inline T sum_lanes(typename Lanes<T>::type v) {
  if constexpr (kRowLanes<T> == 8)
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
  else
    return (v[0] + v[1]) + (v[2] + v[3]);
}

// max of x[0, n), n >= 1.
template <class T>
[[gnu::always_inline]] inline T row_max(const T* x, int64_t n) {
  T m = x[0];
  int64_t j = 0;
  if (n >= kRowLanes<T>) {
    typename Lanes<T>::type lane = load_lanes(x);
    for (j = kRowLanes<T>; j + kRowLanes<T> <= n; j += kRowLanes<T>) {
      const typename Lanes<T>::type v = load_lanes(x + j);
      lane = v > lane ? v : lane;  // vmaxps(v, lane)
    }
    for (int64_t l = 0; l < kRowLanes<T>; ++l)
      m = std::max(m, T(lane[l]));
  }
  for (; j < n; ++j)
    m = std::max(m, x[j]);
  return m;
}

// sum of x[0, n): lane sums, combined pairwise, then the tail.
template <class T>
[[gnu::always_inline]] inline T row_sum(const T* x, int64_t n) {
  typename Lanes<T>::type lane = {};
  int64_t j = 0;
  for (; j + kRowLanes<T> <= n; j += kRowLanes<T>)
    lane += load_lanes(x + j);
  T s = sum_lanes<T>(lane);
  for (; j < n; ++j)
    s += x[j];
  return s;
}

// sum of a[j] * b[j] over [0, n), in row_sum's order.
template <class T>
[[gnu::always_inline]] inline T row_dot(const T* a, const T* b, int64_t n) {
  typename Lanes<T>::type lane = {};
  int64_t j = 0;
  for (; j + kRowLanes<T> <= n; j += kRowLanes<T>)
    lane += load_lanes(a + j) * load_lanes(b + j);
  T s = sum_lanes<T>(lane);
  for (; j < n; ++j)
    s += a[j] * b[j];
  return s;
}

// sum of (x[j] - c)^2 over [0, n), in row_sum's order (a variance about a known mean).
template <class T>
[[gnu::always_inline]] inline T row_sum_sq_dev(const T* x, T c, int64_t n) {
  typename Lanes<T>::type lane = {};
  int64_t j = 0;
  for (; j + kRowLanes<T> <= n; j += kRowLanes<T>) {
    const typename Lanes<T>::type v = load_lanes(x + j) - c;
    lane += v * v;
  }
  T s = sum_lanes<T>(lane);
  for (; j < n; ++j)
    s += (x[j] - c) * (x[j] - c);
  return s;
}

// out[j] = exp(in[j] - max) over [0, n) (out may be in); returns the max and the sum of out.
template <class T>
struct ExpRow {
  T max, sum;
};
template <class T>
[[gnu::always_inline]] inline ExpRow<T> exp_row(const T* in, T* out, int64_t n) {
  const T m = row_max(in, n);
  for (int64_t j = 0; j < n; ++j)
    out[j] = exp_t(in[j] - m);
  return {m, row_sum(out, n)};
}

}  // namespace vmoe::cpu
