// Stateless random numbers for the data pipeline: a value is a pure function of
// (seed, stream, a, b), built from the splitmix64 finaliser. Shuffling and augmentation use it
// so their results depend only on (seed, epoch, example), never on batch split, rank count or
// the order in which batches are produced.
#pragma once
#include <cstdint>

namespace vmoe::data {

// What a random value is for; keeps the shuffle and each augmentation independent.
enum class RandomStream : uint64_t {
  shuffle = 0x5348554646u,
  flip = 0x464c4950u,
  crop = 0x43524f50u,
};

// splitmix64 finaliser: a bijection on 64-bit values with good avalanche.
inline constexpr uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline constexpr uint64_t counter_hash(uint64_t seed, RandomStream stream, uint64_t a, uint64_t b) {
  uint64_t h = mix64(seed);
  h = mix64(h ^ static_cast<uint64_t>(stream));
  h = mix64(h ^ a);
  return mix64(h ^ b);
}

// Exactly uniform integer in [0, range) for range >= 1 (Lemire's multiply-shift; a rejected
// draw is redrawn with the next `attempt`, so the result stays a pure function of the key).
inline uint64_t uniform_below(uint64_t seed, RandomStream stream, uint64_t a, uint64_t b,
                              uint64_t range) {
  const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  for (uint64_t attempt = 0;; ++attempt) {
    const uint64_t x = counter_hash(seed, stream, a, b ^ (attempt << 48));
    const unsigned __int128 m = static_cast<unsigned __int128>(x) * range;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

}  // namespace vmoe::data
