// Shared helpers of the CPU kernels: dtype dispatch, strided iteration, OpenMP thresholds.
#pragma once
#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "core/dtype_dispatch.h"
#include "core/kernel_errors.h"
#include "core/tensor.h"

namespace vmoe::cpu {

// Whether this CPU runs AVX-512 F (kernels compiled with a `target` attribute check it first).
inline bool cpu_has_avx512f() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
}

// Below this many elements a loop runs on one thread: OpenMP start-up costs more.
inline constexpr int64_t kParallelGrain = 1 << 15;

[[noreturn]] inline void unsupported(const char* kernel, DType t) {
  unsupported_dtype(kernel, t, "cpu");
}

// Serial pass before a kernel's parallel loop: the first of p[0, n) outside [lo, hi) is a
// kernel error on `device` ("op: index 9 at position 3 is outside [-1, 5)"). On the strict
// device the kernel goes on and treats out-of-range elements as absent.
template <class I>
void check_in_range(Device device, const char* op, const char* what, const I* p, int64_t n,
                    int64_t lo, int64_t hi) {
  for (int64_t i = 0; i < n; ++i) {
    if (int64_t(p[i]) < lo || int64_t(p[i]) >= hi) {
      kernel_error(device, std::string(op) + ": " + what + " " + std::to_string(int64_t(p[i])) +
                               " at position " + std::to_string(i) + " is outside [" +
                               std::to_string(lo) + ", " + std::to_string(hi) + ")");
      return;
    }
  }
}

// Calls fn(T{}) with T the C++ type of a floating dtype (f32, f64).
template <class Fn>
void dispatch_float(DType t, const char* name, Fn&& fn) {
  dispatch_in<DTypeSet::f32_f64>(t, name, "cpu", fn);
}

// Calls fn(I{}) with I the C++ type of an index dtype (i32, i64).
template <class Fn>
void dispatch_index(DType t, const char* name, Fn&& fn) {
  dispatch_in<DTypeSet::index>(t, name, "cpu", fn);
}

// Iterates the elements of NT tensors of one shape with their own strides. Dimensions that
// are contiguous in every tensor are merged; fn(offsets, n, inner_strides) is called per
// innermost run or piece of one (elementwise work only), possibly from several threads.
template <size_t NT, class Fn>
void for_each_run(const Shape& shape, const std::array<const Shape*, NT>& strides, Fn fn) {
  // Collapse dims.
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, NT> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!sizes.empty()) {
      bool mergeable = true;
      for (size_t t = 0; t < NT; ++t) {
        if (st[t].back() != (*strides[t])[d] * shape[d]) mergeable = false;
      }
      if (mergeable) {
        sizes.back() *= shape[d];
        for (size_t t = 0; t < NT; ++t)
          st[t].back() = (*strides[t])[d];
        continue;
      }
    }
    sizes.push_back(shape[d]);
    for (size_t t = 0; t < NT; ++t)
      st[t].push_back((*strides[t])[d]);
  }
  for (int64_t s : shape) {
    if (s == 0) return;
  }
  if (sizes.empty()) {
    std::array<int64_t, NT> off{};
    std::array<int64_t, NT> inner{};
    fn(off, int64_t(1), inner);
    return;
  }
  const size_t nd = sizes.size();
  const int64_t n_inner = sizes[nd - 1];
  std::array<int64_t, NT> inner;
  for (size_t t = 0; t < NT; ++t)
    inner[t] = st[t][nd - 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < nd; ++d)
    rows *= sizes[d];
  // Long runs are cut into pieces, so that a contiguous tensor (all one run) is split between
  // threads too; the pieces of an elementwise op give the same bits as the whole run.
  constexpr int64_t kPiece = 1 << 14;
  const int64_t pieces = (n_inner + kPiece - 1) / kPiece, tasks = rows * pieces;
#pragma omp parallel for schedule(static) if (rows * n_inner > kParallelGrain && tasks > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t r = task / pieces, begin = task % pieces * kPiece;
    std::array<int64_t, NT> off{};
    int64_t rem = r;
    for (size_t d = nd - 1; d-- > 0;) {
      int64_t i = rem % sizes[d];
      rem /= sizes[d];
      for (size_t t = 0; t < NT; ++t)
        off[t] += i * st[t][d];
    }
    for (size_t t = 0; t < NT; ++t)
      off[t] += begin * inner[t];
    fn(off, std::min(kPiece, n_inner - begin), inner);
  }
}

}  // namespace vmoe::cpu
