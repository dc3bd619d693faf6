// The counter-based RNG (core/rng.h) and the random ops built on it: Philox known answers,
// purity in (key, index), independence of seeds/streams, derive(), moments of randn, and the
// offset semantics that make random values independent of how a batch is split.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"

using namespace vmoe;

namespace {

// Reference Philox-4x32-10 (Salmon et al. 2011), written from the paper; checked below
// against the Random123 known-answer vectors.
std::array<uint32_t, 4> ref_philox(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c[0], p1 = uint64_t(0xCD9E8D57u) * c[2];
    c = {uint32_t(p1 >> 32) ^ c[1] ^ k[0], uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k[1],
         uint32_t(p0)};
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  return c;
}

// SplitMix64's output for state x (Steele, Lea & Flood 2014; Vigna's splitmix64.c).
uint64_t ref_splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64-bit FNV-1a.
uint64_t ref_fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s)
    h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return h;
}

std::vector<double> values(const Tensor& t) {
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ma += a[i] / double(a.size());
    mb += b[i] / double(b.size());
  }
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

bool same_key(RngKey a, RngKey b) {
  return a.seed == b.seed && a.stream == b.stream;
}

}  // namespace

TEST_CASE("rng: the reference generators reproduce their published known answers") {
  // Random123 kat_vectors: philox4x32 10 CTR KEY -> EXPECTED.
  CHECK(ref_philox({0, 0, 0, 0}, {0, 0}) ==
        std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(ref_philox({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}) ==
        std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(ref_philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  // SplitMix64 seeded with 0: first outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4.
  CHECK(ref_splitmix64(0) == 0xE220A8397B1DCDAFull);
  CHECK(ref_splitmix64(0x9E3779B97F4A7C15ull) == 0x6E789E6AA1B965F4ull);
  // FNV-1a: the offset basis for "", and "a".
  CHECK(ref_fnv1a("") == 0xcbf29ce484222325ull);
  CHECK(ref_fnv1a("a") == 0xaf63dc4c8601ec8cull);
}

TEST_CASE("rng: philox is Philox-4x32-10 on (counter, stream) with a key hashed from the seed") {
  // Counter words: the 64-bit counter, then the 64-bit stream; key: SplitMix64 of
  // seed ^ SplitMix64(stream). Pinning this keeps every saved run's random numbers stable.
  for (RngKey key : {RngKey{0, 0}, RngKey{1, 0}, RngKey{0, 1}, RngKey{0xdeadbeef, 0x123456789ull},
                     RngKey{~0ull, ~0ull}}) {
    for (uint64_t counter : {0ull, 1ull, 12345ull, (1ull << 32) + 7, ~0ull}) {
      const uint64_t k = ref_splitmix64(key.seed ^ ref_splitmix64(key.stream));
      const auto expect = ref_philox({uint32_t(counter), uint32_t(counter >> 32),
                                      uint32_t(key.stream), uint32_t(key.stream >> 32)},
                                     {uint32_t(k), uint32_t(k >> 32)});
      CHECK(philox(key, counter) == expect);
    }
  }
}

TEST_CASE("rng: philox, uniform01 and normal01 are pure functions of (key, index)") {
  const RngKey key{42, 7};
  for (uint64_t i : {0ull, 1ull, 99ull, 1ull << 40}) {
    CHECK(philox(key, i) == philox(RngKey{42, 7}, i));
    CHECK(uniform01(key, i) == uniform01(key, i));
    CHECK(normal01(key, i) == normal01(key, i));
  }
  // Order of evaluation does not matter: a value is not a draw from a state.
  const double later = normal01(key, 1000);
  for (uint64_t i = 0; i < 1000; ++i)
    (void)normal01(key, i);
  CHECK(normal01(key, 1000) == later);
  // Every counter bit matters, including the high half.
  CHECK(philox(key, 0) != philox(key, 1));
  CHECK(philox(key, 0) != philox(key, 1ull << 32));
  CHECK(philox(key, 0) != philox(key, 1ull << 63));
  // uniform01 is in the open interval; normal01 comes from the same block by Box-Muller,
  // so normal01^2 <= -2 log u1 with u1 = uniform01 (the first two words).
  int64_t outside = 0, not_box_muller = 0;
  for (uint64_t i = 0; i < 20000; ++i) {
    const double u = uniform01(key, i), z = normal01(key, i);
    outside += !(u > 0.0 && u < 1.0);
    not_box_muller += !(z * z <= -2 * std::log(u) * (1 + 1e-12));
  }
  CHECK(outside == 0);
  CHECK(not_box_muller == 0);
}

TEST_CASE("rng: uniform01_run and normal01_run equal the element-wise calls bit for bit") {
  // Lengths around the 4-lane registers and 12-lane batches, offsets across the counter's 32-bit
  // carry and its wrap at 2^64.
  for (const RngKey key : {RngKey{42, 7}, RngKey{3, 1ull << 40}}) {
    for (uint64_t offset : {0ull, 5ull, (1ull << 32) - 9, (1ull << 63) + 3, ~0ull - 6}) {
      for (int64_t n : {1, 3, 4, 5, 11, 12, 13, 16, 25, 40, 1000}) {
        std::vector<double> u(static_cast<size_t>(n)), z(static_cast<size_t>(n));
        uniform01_run(key, offset, n, u.data());
        normal01_run(key, offset, n, z.data());
        int64_t differ = 0;
        for (int64_t i = 0; i < n; ++i)
          differ += u[size_t(i)] != uniform01(key, offset + uint64_t(i)) ||
                    z[size_t(i)] != normal01(key, offset + uint64_t(i));
        INFO("seed " << key.seed << ", offset " << offset << ", n " << n);
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("rng: different seeds and streams give different, uncorrelated numbers") {
  const int64_t n = 10000;
  const std::vector<RngKey> keys = {{1, 0}, {2, 0}, {1, 1}, {0, 1}, {1, 2}, {2, 1}};
  std::vector<std::vector<double>> draws;
  for (RngKey k : keys)
    draws.push_back(values(randn({n}, k, 0, DType::f64)));
  for (size_t a = 0; a < keys.size(); ++a) {
    for (size_t b = a + 1; b < keys.size(); ++b) {
      INFO("keys {" << keys[a].seed << ", " << keys[a].stream << "} and {" << keys[b].seed << ", "
                    << keys[b].stream << "}");
      int64_t equal = 0;
      for (int64_t i = 0; i < n; ++i)
        equal += draws[a][size_t(i)] == draws[b][size_t(i)];
      CHECK(equal == 0);
      // Sample correlation of independent N(0, 1): sd 0.01 for n = 10^4.
      CHECK(std::abs(correlation(draws[a], draws[b])) < 0.05);
    }
  }
  // Neighbouring indices of one key are uncorrelated too (lag-1 autocorrelation).
  std::vector<double> head(draws[0].begin(), draws[0].end() - 1),
      tail(draws[0].begin() + 1, draws[0].end());
  CHECK(std::abs(correlation(head, tail)) < 0.05);
}

TEST_CASE("rng: derive is stable and separates purposes") {
  const RngKey root{1234, 5};
  const RngKey a = derive(root, "router", 3);
  CHECK(same_key(a, derive(root, "router", 3)));
  CHECK(same_key(a, derive(RngKey{1234, 5}, std::string("router"), 3)));
  CHECK(a.seed == root.seed);  // the seed is kept, the stream changes
  CHECK(a.stream != root.stream);
  CHECK_FALSE(same_key(a, derive(root, "router", 4)));
  CHECK_FALSE(same_key(a, derive(root, "dropout", 3)));
  CHECK_FALSE(same_key(a, derive(RngKey{1234, 6}, "router", 3)));
  CHECK_FALSE(same_key(derive(derive(root, "a"), "b"), derive(derive(root, "b"), "a")));
  CHECK(derive(RngKey{99, 5}, "router", 3).stream == a.stream);  // stream depends on stream only
  // The exact recipe (so that streams survive refactors and checkpoints resume exactly):
  // stream' = SplitMix64(stream ^ SplitMix64(FNV-1a(tag) ^ SplitMix64(value))).
  for (std::string_view tag : {"", "router", "dropout", "layer/7"}) {
    for (uint64_t value : {0ull, 1ull, 1ull << 50}) {
      const RngKey d = derive(root, tag, value);
      CHECK(d.stream ==
            ref_splitmix64(root.stream ^ ref_splitmix64(ref_fnv1a(tag) ^ ref_splitmix64(value))));
    }
  }
  // Derived keys give uncorrelated numbers.
  CHECK(std::abs(correlation(values(randn({10000}, derive(root, "x", 0), 0, DType::f64)),
                             values(randn({10000}, derive(root, "x", 1), 0, DType::f64)))) < 0.05);
}

TEST_CASE("rng: randn of 100k values has mean 0 and std 1") {
  const auto v = values(randn({100000}, RngKey{2024, 1}, 0, DType::f64));
  double mean = 0;
  for (double x : v)
    mean += x / double(v.size());
  double var = 0, m4 = 0, tail = 0;
  for (double x : v) {
    var += (x - mean) * (x - mean) / double(v.size());
    m4 += std::pow(x - mean, 4) / double(v.size());
    tail += std::abs(x) > 1.959963984540054;
  }
  // Standard errors: mean 0.003, std 0.0022, kurtosis ~0.015, tail fraction 0.0007.
  CHECK(std::abs(mean) < 0.02);
  CHECK(std::abs(std::sqrt(var) - 1) < 0.02);
  CHECK(std::abs(m4 / (var * var) - 3) < 0.1);
  CHECK(std::abs(tail / double(v.size()) - 0.05) < 0.005);
  // Uniform: mean 1/2, variance 1/12.
  const auto u = values(rand_uniform({100000}, RngKey{2024, 2}, 0.0, 1.0, 0, DType::f64));
  double um = 0, uv = 0;
  for (double x : u)
    um += x / double(u.size());
  for (double x : u)
    uv += (x - um) * (x - um) / double(u.size());
  CHECK(std::abs(um - 0.5) < 0.005);
  CHECK(std::abs(uv - 1.0 / 12) < 0.002);
}

TEST_CASE("rng: randn values are normal01 at their flat index, in every dtype") {
  // Large enough for the parallel fill: element i is normal01(key, offset + i) whatever thread
  // computed it.
  const RngKey key{8, 9};
  const auto v = values(randn({50000}, key, 3, DType::f64));
  const auto f = randn({50000}, key, 3, DType::f32).cpu().to_vector<float>();
  int64_t differ = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    differ += v[i] != normal01(key, 3 + i);
    differ += f[i] != float(v[i]);
  }
  const auto u = values(rand_uniform({5000}, key, -1.0, 3.0, 11, DType::f64));
  for (size_t i = 0; i < u.size(); ++i)
    differ += u[i] != -1.0 + 4.0 * uniform01(key, 11 + i);
  CHECK(differ == 0);
}

TEST_CASE("rng: an offset gives the matching slice of a bigger tensor") {
  const RngKey key{31, 4};
  const auto big = values(randn({1000}, key, 0, DType::f64));
  const auto part = values(randn({300}, key, 200, DType::f64));
  for (size_t i = 0; i < part.size(); ++i)
    CHECK(part[i] == big[200 + i]);
  // 2-D: rows 2..3 of a [4, 5] tensor start at flat index 10.
  Tensor full = randn({4, 5}, key);
  CHECK(values(randn({2, 5}, key, 10)) == values(slice(full, 0, 2, 4)));
  // Uniform likewise.
  CHECK(values(rand_uniform({3, 5}, key, 0, 1, 5)) ==
        values(slice(reshape(rand_uniform({4, 5}, key, 0, 1), {20}), 0, 5, 20).reshape({3, 5})));
}

TEST_CASE("rng: dropout masks do not depend on the batch split") {
  const RngKey key{5, 17};
  const double rate = 0.4;
  const int64_t rows = 8, cols = 6;
  Tensor x = add_scalar(randn({rows, cols}, RngKey{6, 0}, 0, DType::f64), 3.0);
  Tensor whole = dropout(x, rate, key, 0);
  // Two ranks with 3 and 5 rows: the second starts at flat offset 3 * cols.
  Tensor first = dropout(slice(x, 0, 0, 3), rate, key, 0);
  Tensor second = dropout(slice(x, 0, 3, rows), rate, key, 3 * cols);
  CHECK(values(concat({first, second}, 0)) == values(whole));
  // A mask with an offset equals the matching flat window of a bigger mask.
  Tensor ones_big = Tensor::full({20, 5}, 1.0, DType::f32);
  const auto big = values(dropout(ones_big, rate, key, 0));
  const auto part = values(dropout(Tensor::full({8, 5}, 1.0, DType::f32), rate, key, 15));
  for (size_t i = 0; i < part.size(); ++i)
    CHECK(part[i] == big[15 + i]);
  // The mask element i is kept exactly when uniform01(key, offset + i) >= rate.
  for (size_t i = 0; i < big.size(); ++i)
    CHECK((big[i] != 0) == (uniform01(key, i) >= rate));
  // Some kept, some dropped; another offset gives another mask.
  int64_t dropped = 0;
  for (double m : big)
    dropped += m == 0;
  CHECK(dropped > 0);
  CHECK(dropped < int64_t(big.size()));
  CHECK(values(dropout(ones_big, rate, key, 1)) != big);
}
