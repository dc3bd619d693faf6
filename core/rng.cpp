// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
#include "core/rng.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#if defined(__AVX2__)
#include <immintrin.h>

// glibc's vector math library (libmvec, linked by core/CMakeLists.txt): log and cos of four
// doubles in one call, within 4 ulp of the exact values. The AVX2 entry points, as the build
// targets x86-64-v3: every machine that runs the binary takes the same code path, so the draws
// do not depend on the machine.
extern "C" __m256d _ZGVdN4v_log(__m256d);
extern "C" __m256d _ZGVdN4v_cos(__m256d);
#endif

namespace vmoe {

namespace {
constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key mixes seed and stream so that nearby seeds/streams give unrelated sequences.
uint64_t mixed_key(RngKey key) {
  return splitmix64(key.seed ^ splitmix64(key.stream));
}

// One Philox round on block (c0, c1, c2, c3) with round key (k0, k1).
inline void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                         uint32_t k1) {
  const uint64_t p0 = uint64_t(kMul0) * c0;
  const uint64_t p1 = uint64_t(kMul1) * c2;
  const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
  const uint32_t n1 = uint32_t(p1);
  const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
  const uint32_t n3 = uint32_t(p0);
  c0 = n0;
  c1 = n1;
  c2 = n2;
  c3 = n3;
}

double to_unit(uint32_t hi, uint32_t lo) {
  // 53 random bits mapped to the open interval (0, 1).
  uint64_t bits = (uint64_t(hi) << 21) ^ (uint64_t(lo) >> 11);
  bits &= (1ull << 53) - 1;
  return (double(bits) + 0.5) / double(1ull << 53);
}

#if defined(__AVX2__)
// Box-Muller on four lanes: sqrt(-2 log u1) cos(2 pi u2).
__m256d box_muller4(__m256d u1, __m256d u2) {
  const __m256d radius = _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), _ZGVdN4v_log(u1)));
  const __m256d angle = _mm256_mul_pd(_mm256_set1_pd(2.0 * std::numbers::pi), u2);
  return _mm256_mul_pd(radius, _ZGVdN4v_cos(angle));
}
#endif

// Counters per batch of philox_lanes: 16 lanes of 32 bits fill two AVX-512 or four AVX2
// registers per word of the block.
constexpr int kLanes = 16;

// The Philox blocks of counters first .. first + count - 1 (count <= kLanes) as four words per
// lane: the same rounds as philox(), lane by lane, in loops the compiler vectorises.
void philox_lanes(RngKey key, uint64_t first, int count, uint32_t (&w)[4][kLanes]) {
  const uint64_t k = mixed_key(key);
  for (int l = 0; l < kLanes; ++l) {
    const uint64_t counter = first + uint64_t(l < count ? l : 0);
    w[0][l] = uint32_t(counter);
    w[1][l] = uint32_t(counter >> 32);
    w[2][l] = uint32_t(key.stream);
    w[3][l] = uint32_t(key.stream >> 32);
  }
  uint32_t k0 = uint32_t(k), k1 = uint32_t(k >> 32);
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l)
      philox_round(w[0][l], w[1][l], w[2][l], w[3][l], k0, k1);
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
}

// out[i] = make(block of offset + i) for i in [0, n), kLanes blocks at a time.
template <class Make>
void philox_run(RngKey key, uint64_t offset, int64_t n, double* out, Make make) {
  uint32_t w[4][kLanes];
  for (int64_t i = 0; i < n; i += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, n - i));
    philox_lanes(key, offset + uint64_t(i), count, w);
    for (int l = 0; l < count; ++l)
      out[i + l] = make(w[0][l], w[1][l], w[2][l], w[3][l]);
  }
}
}  // namespace

double box_muller(double u1, double u2) {
#if defined(__AVX2__)
  // Lane 0 of the vector form: the same value as normal01_run's.
  return _mm256_cvtsd_f64(box_muller4(_mm256_set1_pd(u1), _mm256_set1_pd(u2)));
#else
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
#endif
}

std::array<uint32_t, 4> philox(RngKey key, uint64_t counter) {
  const uint64_t k = mixed_key(key);
  uint32_t k0 = uint32_t(k), k1 = uint32_t(k >> 32);
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = uint32_t(key.stream),
           c3 = uint32_t(key.stream >> 32);
  for (int round = 0; round < 10; ++round) {
    philox_round(c0, c1, c2, c3, k0, k1);
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {c0, c1, c2, c3};
}

double uniform01(RngKey key, uint64_t index) {
  auto r = philox(key, index);
  return to_unit(r[0], r[1]);
}

double normal01(RngKey key, uint64_t index) {
  auto r = philox(key, index);
  return box_muller(to_unit(r[0], r[1]), to_unit(r[2], r[3]));
}

void uniform01_run(RngKey key, uint64_t offset, int64_t n, double* out) {
  philox_run(key, offset, n, out,
             [](uint32_t w0, uint32_t w1, uint32_t, uint32_t) { return to_unit(w0, w1); });
}

void normal01_run(RngKey key, uint64_t offset, int64_t n, double* out) {
#if defined(__AVX2__)
  uint32_t w[4][kLanes];
  for (int64_t i = 0; i < n; i += kLanes) {
    const int count = int(std::min<int64_t>(kLanes, n - i));
    philox_lanes(key, offset + uint64_t(i), count, w);
    double u1[kLanes], u2[kLanes], z[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      u1[l] = to_unit(w[0][l], w[1][l]);
      u2[l] = to_unit(w[2][l], w[3][l]);
    }
    for (int l = 0; l < kLanes; l += 4)
      _mm256_storeu_pd(z + l, box_muller4(_mm256_loadu_pd(u1 + l), _mm256_loadu_pd(u2 + l)));
    std::copy(z, z + count, out + i);
  }
#else
  philox_run(key, offset, n, out, [](uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3) {
    return box_muller(to_unit(w0, w1), to_unit(w2, w3));
  });
#endif
}

RngKey derive(RngKey key, std::string_view tag, uint64_t value) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the tag
  for (char c : tag)
    h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return {key.seed, splitmix64(key.stream ^ splitmix64(h ^ splitmix64(value)))};
}

}  // namespace vmoe
