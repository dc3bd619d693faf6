// Vectorisable float exp and tanh: plain arithmetic, so loops over them compile to AVX2 /
// AVX-512 code, unlike calls into libm (core is built with -fno-trapping-math for this).
// exp has ~2 ulp relative error over [-87, 88] and saturates to 0 and inf like expf.
// Double precision keeps libm (the reference of the f64 gradient tests).
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace vmoe::cpu {

inline float exp_fast(float x_in) {
  const float x = std::min(std::max(x_in, -87.0f), 88.0f);
  // x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two parts for an exact reduction, and
  // n rounded to nearest by the 1.5 * 2^23 trick (vectorises, unlike nearbyint).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Degree-6 polynomial for e^r (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = p * std::bit_cast<float>((int32_t(n) + 127) << 23);
  // Saturate like expf: 0 below the smallest normal result, inf above FLT_MAX.
  return x_in < -87.33654f ? 0.0f : (x_in > 88.72284f ? HUGE_VALF : y);
}

inline float tanh_fast(float x) {
  // tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|): no overflow; for tiny |x| the odd series
  // keeps the relative accuracy that the subtraction would lose.
  const float ax = std::abs(x);
  const float e = exp_fast(-2.0f * ax);
  const float t = ax < 0.004f ? ax * (1.0f - ax * ax * (1.0f / 3.0f)) : (1.0f - e) / (1.0f + e);
  return std::copysign(t, x);
}

template <class T>
inline T exp_t(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_fast(x);
  else
    return std::exp(x);
}

template <class T>
inline T tanh_t(T x) {
  if constexpr (std::is_same_v<T, float>)
    return tanh_fast(x);
  else
    return std::tanh(x);
}

// exp and tanh for the shared op math (core/elementwise_math.h): the vectorisable versions.
struct FastMath {
  template <class T>
  static T exp(T x) {
    return exp_t(x);
  }
  template <class T>
  static T tanh(T x) {
    return tanh_t(x);
  }
};

}  // namespace vmoe::cpu
