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

#if defined(__AVX2__)
// Philox on four counters per register: each 64-bit lane holds one block's word in its low 32
// bits. vpmuludq reads only those, and XOR keeps them apart from the high bits, so the high
// halves may hold anything until a word is read out (masked). Three registers of each word run
// side by side, so that the rounds' multiply latencies overlap.
constexpr int kRegs = 3, kLanes = 4 * kRegs;

struct Words {
  __m256i w[4][kRegs];
};

// The blocks of counters first .. first + kLanes - 1 (wrapping at 2^64 as philox()'s counter).
Words philox_blocks(RngKey key, uint64_t first) {
  const uint64_t k = mixed_key(key);
  Words b;
  for (int j = 0; j < kRegs; ++j) {
    const uint64_t c = first + uint64_t(4 * j);
    const __m256i counters =
        _mm256_setr_epi64x(int64_t(c), int64_t(c + 1), int64_t(c + 2), int64_t(c + 3));
    b.w[0][j] = counters;
    b.w[1][j] = _mm256_srli_epi64(counters, 32);
    b.w[2][j] = _mm256_set1_epi64x(int64_t(uint32_t(key.stream)));
    b.w[3][j] = _mm256_set1_epi64x(int64_t(key.stream >> 32));
  }
  const __m256i mul0 = _mm256_set1_epi64x(kMul0), mul1 = _mm256_set1_epi64x(kMul1);
  uint32_t k0 = uint32_t(k), k1 = uint32_t(k >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi64x(k0), key1 = _mm256_set1_epi64x(k1);
    for (int j = 0; j < kRegs; ++j) {
      const __m256i p0 = _mm256_mul_epu32(b.w[0][j], mul0);
      const __m256i p1 = _mm256_mul_epu32(b.w[2][j], mul1);
      b.w[0][j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), b.w[1][j]), key0);
      b.w[1][j] = p1;
      b.w[2][j] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), b.w[3][j]), key1);
      b.w[3][j] = p0;
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return b;
}

// to_unit() of four lanes, bit for bit: the 53 bits converted exactly (two exact halves, as
// AVX2 has no 64-bit integer conversion), then the same + 0.5 and scaling.
__m256d to_unit4(__m256i hi, __m256i lo) {
  const __m256i low32 = _mm256_set1_epi64x(0xFFFFFFFFll);
  __m256i bits = _mm256_xor_si256(_mm256_slli_epi64(_mm256_and_si256(hi, low32), 21),
                                  _mm256_srli_epi64(_mm256_and_si256(lo, low32), 11));
  bits = _mm256_and_si256(bits, _mm256_set1_epi64x((1ll << 53) - 1));
  // x | 0x4330... read as a double is 2^52 + x for x < 2^52; both halves are below 2^32.
  const __m256i exponent = _mm256_set1_epi64x(0x4330000000000000ll);
  const __m256d two52 = _mm256_set1_pd(4503599627370496.0);
  const __m256d high = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 32), exponent)), two52);
  const __m256d low = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, low32), exponent)), two52);
  // high * 2^32 + low is an integer below 2^53: exact, fused or not.
  const __m256d value = _mm256_add_pd(_mm256_mul_pd(high, _mm256_set1_pd(4294967296.0)), low);
  return _mm256_mul_pd(_mm256_add_pd(value, _mm256_set1_pd(0.5)),
                       _mm256_set1_pd(1.0 / double(1ull << 53)));
}

// out[i] = make(u1, u2) of the block of counter offset + i (u1 from words 0 and 1, u2 from 2
// and 3) for i in [0, n), four lanes at a time.
template <class Make>
void philox_run(RngKey key, uint64_t offset, int64_t n, double* out, Make make) {
  for (int64_t i = 0; i < n; i += kLanes) {
    const Words b = philox_blocks(key, offset + uint64_t(i));
    for (int j = 0; j < kRegs && i + 4 * j < n; ++j) {
      const __m256d z = make(to_unit4(b.w[0][j], b.w[1][j]), to_unit4(b.w[2][j], b.w[3][j]));
      const int64_t at = i + 4 * j;
      if (n - at >= 4) {
        _mm256_storeu_pd(out + at, z);
      } else {
        double tail[4];
        _mm256_storeu_pd(tail, z);
        std::copy(tail, tail + (n - at), out + at);
      }
    }
  }
}
#else
// out[i] = make(block of offset + i) for i in [0, n).
template <class Make>
void philox_run(RngKey key, uint64_t offset, int64_t n, double* out, Make make) {
  for (int64_t i = 0; i < n; ++i) {
    const auto w = philox(key, offset + uint64_t(i));
    out[i] = make(w[0], w[1], w[2], w[3]);
  }
}
#endif
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
#if defined(__AVX2__)
  philox_run(key, offset, n, out, [](__m256d u1, __m256d) { return u1; });
#else
  philox_run(key, offset, n, out,
             [](uint32_t w0, uint32_t w1, uint32_t, uint32_t) { return to_unit(w0, w1); });
#endif
}

void normal01_run(RngKey key, uint64_t offset, int64_t n, double* out) {
#if defined(__AVX2__)
  philox_run(key, offset, n, out, box_muller4);
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
