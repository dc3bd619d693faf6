// Philox-4x32-10 and the values drawn from it, as __host__ __device__ functions: the same
// arithmetic as core/rng.cpp, step for step, so that a CUDA kernel draws bit for bit the values
// the CPU backend draws for the same (seed, stream, counter) (test/core/test_cuda_index_bodies.cpp
// compares the two over many counters). Only integer arithmetic and exact double operations up
// to the Box-Muller transform, whose log and cos are the device's libm on a GPU (within a few
// ulp of the host's; see normal01). Host and device code alike (nvcc and g++).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/elementwise_math.h"  // VMOE_HD
#include "core/rng.h"               // box_muller, on the host

namespace vmoe::cuda {

struct Philox4 {
  uint32_t v[4];
};

VMOE_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The Philox-4x32-10 block of core/rng.cpp's philox(RngKey{seed, stream}, counter).
VMOE_HD inline Philox4 philox(uint64_t seed, uint64_t stream, uint64_t counter) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  const uint64_t k = splitmix64(seed ^ splitmix64(stream));
  uint32_t k0 = uint32_t(k), k1 = uint32_t(k >> 32);
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = uint32_t(stream),
           c3 = uint32_t(stream >> 32);
  for (int round = 0; round < 10; ++round) {
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
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 53 random bits mapped to the open interval (0, 1): exact in double (an integer below 2^54
// plus 0.5, divided by a power of two), so no rounding or contraction can differ.
VMOE_HD inline double philox_to_unit(uint32_t hi, uint32_t lo) {
  uint64_t bits = (uint64_t(hi) << 21) ^ (uint64_t(lo) >> 11);
  bits &= (1ull << 53) - 1;
  return (double(bits) + 0.5) / double(1ull << 53);
}

// core/rng.cpp's uniform01(RngKey{seed, stream}, index).
VMOE_HD inline double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
  const Philox4 r = philox(seed, stream, index);
  return philox_to_unit(r.v[0], r.v[1]);
}

// core/rng.cpp's normal01(RngKey{seed, stream}, index): Box-Muller on one Philox block. On the
// host this is core/rng.cpp's box_muller, the CPU backend's values bit for bit; on a GPU CUDA's
// double log and cos (at most 1 ulp from the correctly rounded value, where the host's vector
// log and cos are within 4), so a device value may differ from the CPU's in its last bits, and
// an f32 value almost never.
VMOE_HD inline double normal01(uint64_t seed, uint64_t stream, uint64_t index) {
  const Philox4 r = philox(seed, stream, index);
  const double u1 = philox_to_unit(r.v[0], r.v[1]);
  const double u2 = philox_to_unit(r.v[2], r.v[3]);
#if defined(__CUDA_ARCH__)
  constexpr double kPi = 3.141592653589793;  // std::numbers::pi, which C++17 (nvcc) lacks
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
#else
  return box_muller(u1, u2);
#endif
}

}  // namespace vmoe::cuda
