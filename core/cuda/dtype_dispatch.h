// The dtype dispatch of the CUDA backend's entries: fn(T{}) with T the stored C++ type of the
// tensor's dtype; a dtype an entry does not handle is an std::invalid_argument naming both.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/dtype.h"

namespace vmoe::cuda {

[[noreturn]] inline void unsupported(const char* entry, DType t) {
  throw std::invalid_argument(std::string(entry) + ": dtype " + dtype_name(t) +
                              " is not supported on cuda");
}

// Calls fn(T{}) with T the stored type of a floating dtype (f32, f64, bf16).
template <class Fn>
void dispatch_floating(DType t, const char* entry, Fn&& fn) {
  switch (t) {
    case DType::f32:
      fn(float{});
      break;
    case DType::f64:
      fn(double{});
      break;
    case DType::bf16:
      fn(BFloat16{});
      break;
    default:
      unsupported(entry, t);
  }
}

// f32 and f64 only (optimizer state, top-k's router probabilities).
template <class Fn>
void dispatch_f32_f64(DType t, const char* entry, Fn&& fn) {
  switch (t) {
    case DType::f32:
      fn(float{});
      break;
    case DType::f64:
      fn(double{});
      break;
    default:
      unsupported(entry, t);
  }
}

template <class Fn>
void dispatch_index(DType t, const char* entry, Fn&& fn) {
  switch (t) {
    case DType::i32:
      fn(int32_t{});
      break;
    case DType::i64:
      fn(int64_t{});
      break;
    default:
      unsupported(entry, t);
  }
}

}  // namespace vmoe::cuda
