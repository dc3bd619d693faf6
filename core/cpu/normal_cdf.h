// Phi(x) = erfc(-x / sqrt 2) / 2 of four floats in double through glibc's vector erfc (libmvec,
// AVX2 variant), shared by the unary op and the fused load loss so that both give the same bits.
#pragma once
#include <immintrin.h>

#include "core/elementwise_math.h"

// glibc's vector math library (libmvec), AVX2 variant: 4 doubles per call.
extern "C" __m256d _ZGVdN4v_erfc(__m256d);

namespace vmoe::cpu {

// In double, as the shared op math (core/elementwise_math.h), whose scalar erfc call kept the
// loop serial.
inline __m128 normal_cdf4(__m128 x) {
  const __m256d arg = _mm256_mul_pd(_mm256_cvtps_pd(x), _mm256_set1_pd(-kInvSqrt2));
  return _mm256_cvtpd_ps(_mm256_mul_pd(_ZGVdN4v_erfc(arg), _mm256_set1_pd(0.5)));
}

// y[i] = Phi(x[i]) for i in [0, n) on one thread, the last partial vector padded, so that an
// element's value does not depend on its position.
inline void normal_cdf_run(const float* __restrict x, float* __restrict y, int64_t n) {
  const int64_t full = n / 4;
  for (int64_t b = 0; b < full; ++b)
    _mm_storeu_ps(y + 4 * b, normal_cdf4(_mm_loadu_ps(x + 4 * b)));
  if (const int64_t rest = n - 4 * full; rest > 0) {
    alignas(16) float in[4] = {0, 0, 0, 0}, out[4];
    for (int64_t i = 0; i < rest; ++i)
      in[i] = x[4 * full + i];
    _mm_store_ps(out, normal_cdf4(_mm_load_ps(in)));
    for (int64_t i = 0; i < rest; ++i)
      y[4 * full + i] = out[i];
  }
}

}  // namespace vmoe::cpu
