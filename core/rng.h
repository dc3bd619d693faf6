// Counter-based RNG (Philox-4x32-10): a random value is a pure function of
// (seed, stream, counter), so results do not depend on thread count, batch split or rank
// count, and resuming at a step reproduces the same values.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>

namespace vmoe {

struct RngKey {
  uint64_t seed = 0;
  uint64_t stream = 0;  // what the numbers are for (layer, purpose, step), see derive()
};

// Philox-4x32-10 block for (key, counter).
std::array<uint32_t, 4> philox(RngKey key, uint64_t counter);
// Uniform in (0, 1) (never 0 or 1) for element `index`.
double uniform01(RngKey key, uint64_t index);
// Standard normal for element `index` (Box-Muller on one Philox block).
double normal01(RngKey key, uint64_t index);
// The Box-Muller transform sqrt(-2 log u1) cos(2 pi u2) of normal01, in double: glibc's vector
// log and cos (libmvec) in builds for AVX2, as every x86-64-v3 build is, else its scalar ones.
double box_muller(double u1, double u2);
// out[i] = uniform01(key, offset + i) and normal01(key, offset + i) for i in [0, n), bit for
// bit: the key is hashed once and the Philox rounds and Box-Muller run on 12 counters at a
// time, vectorised.
void uniform01_run(RngKey key, uint64_t offset, int64_t n, double* out);
void normal01_run(RngKey key, uint64_t offset, int64_t n, double* out);
// A new key for a sub-purpose: stable hash of (key, tag, value).
RngKey derive(RngKey key, std::string_view tag, uint64_t value = 0);

}  // namespace vmoe
