// The dtype dispatch of the backends' kernels: fn(T{}) with T the C++ type stored for a
// dtype. A dtype outside the set a kernel handles is an std::invalid_argument naming the
// kernel, the dtype and the device ("gather: dtype u8 is not supported on cuda").
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/dtype.h"

namespace vmoe {

[[noreturn]] inline void unsupported_dtype(const char* kernel, DType t, const char* device) {
  throw std::invalid_argument(std::string(kernel) + ": dtype " + dtype_name(t) +
                              " is not supported on " + device);
}

// Calls fn(T{}) with T the C++ type stored for any dtype.
template <class Fn>
void dispatch_stored(DType t, Fn&& fn) {
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
    case DType::i32:
      fn(int32_t{});
      break;
    case DType::i64:
      fn(int64_t{});
      break;
    case DType::u8:
      fn(uint8_t{});
      break;
  }
}

// The dtype sets kernels handle.
enum class DTypeSet {
  f32_f64,   // full-precision floating (optimizer state, router probabilities, CPU math)
  floating,  // f32, f64, bf16
  index,     // i32, i64
};

template <DTypeSet S, class T>
inline constexpr bool in_dtype_set =
    S == DTypeSet::index ? (std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>)
                         : (std::is_same_v<T, float> || std::is_same_v<T, double> ||
                            (S == DTypeSet::floating && std::is_same_v<T, BFloat16>));

// Calls fn(T{}) when t's type is in S (fn is instantiated for those types only), else throws.
template <DTypeSet S, class Fn>
void dispatch_in(DType t, const char* kernel, const char* device, Fn&& fn) {
  dispatch_stored(t, [&](auto v) {
    if constexpr (in_dtype_set<S, decltype(v)>)
      fn(v);
    else
      unsupported_dtype(kernel, t, device);
  });
}

}  // namespace vmoe
