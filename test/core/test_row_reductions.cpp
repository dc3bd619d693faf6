// Tests of core/cpu/row_reductions.h: the row max, sum and dot that the CPU softmax and fused
// attention share, against plain loops written out in the documented order (lane partial
// sums over the whole vectors, combined pairwise, then the tail), for every row length that
// exercises a different split of full vectors and tail.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "core/cpu/fast_math.h"
#include "core/cpu/row_reductions.h"

namespace {

template <class T>
std::vector<T> random_row(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> d(-4.0, 4.0);
  std::vector<T> x(static_cast<size_t>(n));
  for (T& v : x)
    v = T(d(rng));
  return x;
}

// The documented order: lane l sums x[l], x[l + L], ... over the full vectors; the lanes are
// combined pairwise ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)); then the tail in order.
template <class T, class Term>
T reference_sum(int64_t n, Term term) {
  constexpr int64_t lanes = vmoe::cpu::kRowLanes<T>;
  std::vector<T> part(size_t(lanes), T(0));
  int64_t j = 0;
  for (; j + lanes <= n; j += lanes)
    for (int64_t l = 0; l < lanes; ++l)
      part[size_t(l)] += term(j + l);
  T s = lanes == 8 ? ((part[0] + part[1]) + (part[2] + part[3])) +
                         ((part[4] + part[5]) + (part[6] + part[7]))
                   : (part[0] + part[1]) + (part[2] + part[3]);
  for (; j < n; ++j)
    s += term(j);
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("row reductions: max, sum and dot in the documented order, every split",
                   "[row_reductions]", float, double) {
  using T = TestType;
  std::mt19937 rng(7);
  for (int64_t n = 1; n <= 53; ++n) {
    CAPTURE(n);
    const std::vector<T> x = random_row<T>(n, rng), y = random_row<T>(n, rng);
    // The max wherever it lies: first, in the vector part, in the tail.
    for (int64_t at : {int64_t(0), n / 2, n - 1}) {
      std::vector<T> z = x;
      z[size_t(at)] = T(9);
      CHECK(vmoe::cpu::row_max(z.data(), n) == T(9));
    }
    CHECK(vmoe::cpu::row_max(x.data(), n) == *std::max_element(x.begin(), x.end()));
    CHECK(vmoe::cpu::row_sum(x.data(), n) ==
          reference_sum<T>(n, [&](int64_t j) { return x[size_t(j)]; }));
    CHECK(vmoe::cpu::row_dot(x.data(), y.data(), n) ==
          reference_sum<T>(n, [&](int64_t j) { return x[size_t(j)] * y[size_t(j)]; }));
  }
}

TEMPLATE_TEST_CASE("row reductions: exp_row writes exp(x - max) and returns the max and the sum",
                   "[row_reductions]", float, double) {
  using T = TestType;
  std::mt19937 rng(11);
  for (int64_t n : {1, 7, 8, 9, 50}) {
    CAPTURE(n);
    const std::vector<T> x = random_row<T>(n, rng);
    std::vector<T> out(static_cast<size_t>(n)), in_place = x;
    const auto [m, s] = vmoe::cpu::exp_row(x.data(), out.data(), n);
    CHECK(m == *std::max_element(x.begin(), x.end()));
    for (int64_t j = 0; j < n; ++j)
      CHECK(out[size_t(j)] == vmoe::cpu::exp_t(x[size_t(j)] - m));
    CHECK(s == reference_sum<T>(n, [&](int64_t j) { return out[size_t(j)]; }));
    // In place (the softmax of the attention scores) gives the same.
    const auto [m2, s2] = vmoe::cpu::exp_row(in_place.data(), in_place.data(), n);
    CHECK(m2 == m);
    CHECK(s2 == s);
    CHECK(in_place == out);
  }
}
