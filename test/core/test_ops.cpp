// Forward values of the ops in core/ops.h against hand-computed results and naive reference
// loops, view/storage semantics, dtypes, and the argument errors every op raises.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <numeric>
#include <stdexcept>

#include <omp.h>

#include "core/autograd.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "test/core/device_testing.h"

using namespace vmoe;
using Catch::Matchers::Contains;

namespace {

Tensor f32(const std::vector<float>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}
Tensor f64(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}
Tensor i32(const std::vector<int32_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}
Tensor i64(const std::vector<int64_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s);
}

std::vector<double> values(const Tensor& t) {
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

// x[i, j, k] = 100 i + 10 j + k for x [2, 3, 4]: every sum has a closed form.
Tensor coded_234() {
  std::vector<double> v;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        v.push_back(100.0 * i + 10.0 * j + k);
  return f64(v, {2, 3, 4});
}

// One-line std::invalid_argument whose message contains `text`.
#define CHECK_INVALID(expr, text)                               \
  do {                                                          \
    CHECK_THROWS_AS(expr, std::invalid_argument);               \
    CHECK_THROWS_WITH(expr, Contains(text) && !Contains("\n")); \
  } while (false)

}  // namespace

// ---------------------------------------------------------------- elementwise

TEST_CASE("ops: broadcast_shapes") {
  CHECK(broadcast_shapes({3, 1}, {1, 4}, "t") == Shape{3, 4});
  CHECK(broadcast_shapes({}, {2, 3}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes({2, 3, 4}, {3, 1}, "t") == Shape{2, 3, 4});
  CHECK(broadcast_shapes({4}, {3, 4}, "t") == Shape{3, 4});
  CHECK(broadcast_shapes({1, 3, 1}, {2, 1, 4}, "t") == Shape{2, 3, 4});
  CHECK(broadcast_shapes({0, 1}, {1, 5}, "t") == Shape{0, 5});
}

TEST_CASE("ops: binary broadcasting values") {
  const std::vector<double> av = {1, 2, 3}, bv = {10, 20, 40, 80};
  Tensor a = f64(av, {3, 1}), b = f64(bv, {1, 4});
  struct Case {
    Tensor (*op)(const Tensor&, const Tensor&);
    double (*ref)(double, double);
  };
  const Case cases[] = {{add, [](double x, double y) { return x + y; }},
                        {sub, [](double x, double y) { return x - y; }},
                        {mul, [](double x, double y) { return x * y; }},
                        {div, [](double x, double y) { return x / y; }}};
  for (const Case& c : cases) {
    for (bool swapped : {false, true}) {
      Tensor out = swapped ? c.op(b, a) : c.op(a, b);
      REQUIRE(out.shape() == Shape{3, 4});
      const std::vector<double> o = out.cpu().to_vector<double>();
      for (size_t i = 0; i < 3; ++i)
        for (size_t j = 0; j < 4; ++j)
          CHECK(o[i * 4 + j] == (swapped ? c.ref(bv[j], av[i]) : c.ref(av[i], bv[j])));
    }
  }
  // [3, 4] with [4]: row broadcast.
  Tensor m = f32({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  const std::vector<float> r = add(m, f32({100, 200, 300, 400}, {4})).cpu().to_vector<float>();
  for (int i = 0; i < 12; ++i)
    CHECK(r[size_t(i)] == float(i + 100 * (i % 4 + 1)));
  // A scalar [] on either side.
  Tensor s = f32({2}, {});
  CHECK(sub(s, m).cpu().to_vector<float>()[5] == -3.0f);
  CHECK(div(m, s).cpu().to_vector<float>()[5] == 2.5f);
  CHECK(mul(s, s).shape() == Shape{});
  // A transposed (strided) operand: out[i, j] = m[j, i] * 2.
  const std::vector<float> t = mul(transpose(m, 0, 1), f32({2}, {1})).cpu().to_vector<float>();
  REQUIRE(t.size() == 12);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(t[size_t(i * 3 + j)] == 2.0f * float(j * 4 + i));
  // [2, 3, 4] with [3, 1].
  Tensor big = add(coded_234(), f64({1000, 2000, 3000}, {3, 1}));
  const std::vector<double> bg = big.cpu().to_vector<double>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        CHECK(bg[size_t((i * 3 + j) * 4 + k)] == 100.0 * i + 10.0 * j + k + 1000.0 * (j + 1));
}

TEST_CASE("ops: scalar shorthands and operators") {
  Tensor x = f64({1, -2, 4}, {3});
  CHECK(values(add_scalar(x, 0.5)) == std::vector<double>{1.5, -1.5, 4.5});
  CHECK(values(mul_scalar(x, -3)) == std::vector<double>{-3, 6, -12});
  CHECK(values(x * 2.0 + 1.0) == std::vector<double>{3, -3, 9});
  CHECK(values(2.0 * x - 1.0) == std::vector<double>{1, -5, 7});
  CHECK(values(x / 4.0) == std::vector<double>{0.25, -0.5, 1});
  CHECK(values(-x) == std::vector<double>{-1, 2, -4});
  CHECK(values(x * x - x / x) == std::vector<double>{0, 3, 15});
}

TEST_CASE("ops: unary values") {
  const std::vector<double> xs = {-3.0, -0.7, -0.1, 0.0, 0.25, 1.0, 2.5};
  const std::vector<double> pos = {0.01, 0.5, 1.0, 2.0, 9.0};
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f32 ? 1e-6 : 1e-15;
    Tensor x = to_dtype(f64(xs, {int64_t(xs.size())}), dt);
    Tensor p = to_dtype(f64(pos, {int64_t(pos.size())}), dt);
    const auto xv = values(x), pv = values(p);  // the inputs as the dtype holds them
    auto near = [&](const Tensor& got, const std::vector<double>& in, auto ref) {
      REQUIRE(got.dtype() == dt);
      const auto g = values(got);
      for (size_t i = 0; i < in.size(); ++i) {
        INFO("x = " << in[i]);
        CHECK(std::abs(g[i] - ref(in[i])) <= tol * (1 + std::abs(ref(in[i]))));
      }
    };
    near(neg(x), xv, [](double v) { return -v; });
    near(exp(x), xv, [](double v) { return std::exp(v); });
    near(log(p), pv, [](double v) { return std::log(v); });
    near(tanh(x), xv, [](double v) { return std::tanh(v); });
    near(sigmoid(x), xv, [](double v) { return 1 / (1 + std::exp(-v)); });
    near(relu(x), xv, [](double v) { return v > 0 ? v : 0.0; });
    near(sqrt(p), pv, [](double v) { return std::sqrt(v); });
    near(square(x), xv, [](double v) { return v * v; });
    // The tanh approximation of GELU as written in the reference (Hendrycks & Gimpel).
    near(gelu(x), xv, [](double v) {
      return 0.5 * v *
             (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
    });
    near(normal_cdf(x), xv, [](double v) { return 0.5 * std::erfc(-v / std::numbers::sqrt2); });
  }
  // GELU: odd part is exactly x/2, gelu(0) = 0, and within 1e-3 of the exact x * Phi(x)
  // (the approximation's worst error is about 4.7e-4).
  Tensor x = f64({-4, -2, -1, -0.5, 0, 0.5, 1, 2, 4}, {9});
  const auto g = values(gelu(x)), gn = values(gelu(neg(x))), xv = values(x);
  for (size_t i = 0; i < xv.size(); ++i) {
    CHECK(std::abs(g[i] - gn[i] - xv[i]) < 1e-12);
    CHECK(std::abs(g[i] - xv[i] * 0.5 * std::erfc(-xv[i] / std::numbers::sqrt2)) < 1e-3);
  }
  CHECK(g[4] == 0.0);
  // Standard normal CDF at known points: Phi(0) = 1/2, Phi(1.959963984540054) = 0.975,
  // Phi(-1) = 0.15865525393145707.
  const auto c = values(normal_cdf(f64({0, 1.959963984540054, -1}, {3})));
  CHECK(c[0] == 0.5);
  CHECK(c[1] == Approx(0.975).epsilon(1e-14));
  CHECK(c[2] == Approx(0.15865525393145707).epsilon(1e-14));
  // Sigmoid saturates without NaN (the f32 exp may flush to ~1e-38 rather than 0).
  const auto sg = values(sigmoid(f32({-200, 200}, {2})));
  CHECK(sg[0] >= 0.0);
  CHECK(sg[0] < 1e-37);
  CHECK(sg[1] == 1.0);
}

TEST_CASE("ops: f32 normal_cdf is the rounded double Phi everywhere, the far tail included") {
  // The load loss reaches arguments of -14 (results near f32's smallest subnormal); 1003
  // elements, so the last partial vector of the CPU's 4-lane kernel is exercised.
  const int64_t n = 1003;
  std::vector<double> xs(n);
  for (int64_t i = 0; i < n; ++i)
    xs[size_t(i)] = -14.0 + 22.0 * double(i) / double(n - 1) + 1e-3 * double(i % 7);
  const Tensor x = to_dtype(f64(xs, {n}), DType::f32);
  const auto xv = values(x), y = values(normal_cdf(x));
  for (int64_t i = 0; i < n; ++i) {
    const double ref = 0.5 * std::erfc(-xv[size_t(i)] / std::numbers::sqrt2);
    INFO("x = " << xv[size_t(i)]);
    // Within one f32 ulp of the exact value (subnormals: within one subnormal step).
    CHECK(std::abs(y[size_t(i)] - ref) <= std::max(ref * 0x1p-23, 0x1p-149));
  }
  // An element's value does not depend on where it sits (a tail element alone, and first).
  for (int64_t i : {int64_t(0), n - 1, n - 2, int64_t(500)})
    CHECK(values(normal_cdf(x.slice(0, i, i + 1)))[0] == y[size_t(i)]);
}

TEST_CASE("ops: in-place helpers add_, scale_, sum_squares, fill_, copy_") {
  Tensor d = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  add_(d, f64({1, 1, 1, 1, 1, 1}, {2, 3}), -2.0);
  CHECK(values(d) == std::vector<double>{-1, 0, 1, 2, 3, 4});
  scale_(d, 0.5);
  CHECK(values(d) == std::vector<double>{-0.5, 0, 0.5, 1, 1.5, 2});
  // sum_squares: a [] f64 tensor on x's device, accumulated in double (also for f32).
  Tensor ss = sum_squares(d);
  CHECK(ss.shape() == Shape{});
  CHECK(ss.dtype() == DType::f64);
  CHECK(ss.device() == d.device());
  CHECK(ss.cpu().item() == 0.25 + 0.25 + 1 + 2.25 + 4);
  CHECK(sum_squares(f32({1e8f, 1}, {2})).cpu().item() == 1e16 + 1);
  CHECK(sum_squares(Tensor::zeros({0}, DType::f32)).cpu().item() == 0.0);
  CHECK(sum_squares(transpose(f64({1, 2, 3, 4}, {2, 2}), 0, 1)).cpu().item() == 30.0);
  // Into a strided view: column 1 of d.
  Tensor col = slice(d, 1, 1, 2);
  add_(col, f64({10, 20}, {2, 1}));
  scale_(col, 2.0);
  CHECK(values(d) == std::vector<double>{-0.5, 20, 0.5, 1, 43, 2});
  fill_(col, -1.0);
  CHECK(values(d) == std::vector<double>{-0.5, -1, 0.5, 1, -1, 2});
  // copy_ converts dtypes.
  Tensor f = Tensor::zeros({2, 3}, DType::f32);
  copy_(f, d);
  CHECK(f.cpu().to_vector<float>() == std::vector<float>{-0.5f, -1, 0.5f, 1, -1, 2});
  Tensor ints = Tensor::zeros({2, 3}, DType::i32);
  copy_(ints, f64({1, -2, 3, 4, 5, 6}, {2, 3}));
  CHECK(ints.cpu().to_vector<int32_t>() == std::vector<int32_t>{1, -2, 3, 4, 5, 6});
}

TEST_CASE("ops: creation") {
  CHECK(arange(5).cpu().to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(3, DType::f32).cpu().to_vector<float>() == std::vector<float>{0, 1, 2});
  CHECK(arange(0).numel() == 0);
  CHECK(Tensor::full({2, 2}, 1.5, DType::f64).cpu().to_vector<double>() ==
        std::vector<double>{1.5, 1.5, 1.5, 1.5});
  CHECK(Tensor::zeros({3}, DType::i64).cpu().to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});
  Tensor r = randn({3, 4}, RngKey{1, 2}, 0, DType::f64);
  CHECK(r.shape() == Shape{3, 4});
  CHECK(r.dtype() == DType::f64);
  const auto u = values(rand_uniform({1000}, RngKey{3, 4}, -2.0, 5.0));
  CHECK(*std::min_element(u.begin(), u.end()) >= -2.0);
  CHECK(*std::max_element(u.begin(), u.end()) < 5.0);
  CHECK(f64({2.5}, {1}).cpu().item() == 2.5);
  CHECK(i32({-7}, {}).cpu().item() == -7.0);
}

// ---------------------------------------------------------------- reductions

TEST_CASE("ops: sum, mean, max over axes") {
  Tensor x = coded_234();
  // sum over i: 100 + 2 (10 j + k).
  Tensor s0 = sum(x, {0});
  REQUIRE(s0.shape() == Shape{3, 4});
  auto v = values(s0);
  for (int j = 0; j < 3; ++j)
    for (int k = 0; k < 4; ++k)
      CHECK(v[size_t(j * 4 + k)] == 100.0 + 2 * (10.0 * j + k));
  // sum over k (trailing): 4 (100 i + 10 j) + 6.
  v = values(sum(x, {-1}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(v[size_t(i * 3 + j)] == 4 * (100.0 * i + 10.0 * j) + 6);
  // sum over j (middle): 3 (100 i + k) + 30.
  Tensor s1 = sum(x, {1}, KeepDim::yes);
  REQUIRE(s1.shape() == Shape{2, 1, 4});
  v = values(s1);
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 4; ++k)
      CHECK(v[size_t(i * 4 + k)] == 3 * (100.0 * i + k) + 30);
  // sum over {0, 2} (not one block): 4 * 100 + 8 * 10 j + 2 * 6.
  for (const std::vector<int64_t>& axes : std::vector<std::vector<int64_t>>{{0, 2}, {2, 0}}) {
    Tensor s02 = sum(x, axes);
    REQUIRE(s02.shape() == Shape{3});
    CHECK(values(s02) == std::vector<double>{412, 492, 572});
  }
  CHECK(sum(x, {0, 2}, KeepDim::yes).shape() == Shape{1, 3, 1});
  // sum over everything: 12 * 100 + 8 * 10 * (0 + 1 + 2) + 6 * (0 + 1 + 2 + 3) = 1476.
  CHECK(sum_all(x).cpu().item() == 1476);
  CHECK(sum_all(x).shape() == Shape{});
  CHECK(sum(x, {0, 1, 2}, KeepDim::yes).shape() == Shape{1, 1, 1});
  CHECK(mean_all(x).cpu().item() == 1476.0 / 24);
  CHECK(sum(x, {}).shape() == x.shape());
  CHECK(values(sum(x, {})) == values(x));
  // mean over {1}: 100 i + 10 + k.
  v = values(mean(x, {1}));
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 4; ++k)
      CHECK(v[size_t(i * 4 + k)] == Approx(100.0 * i + 10 + k));
  CHECK(mean(x, {0, 2}, KeepDim::yes).shape() == Shape{1, 3, 1});
  // max: over i -> 100 + 10 j + k; over k -> 100 i + 10 j + 3; over j -> 100 i + 20 + k.
  v = values(max(x, 0));
  for (int j = 0; j < 3; ++j)
    for (int k = 0; k < 4; ++k)
      CHECK(v[size_t(j * 4 + k)] == 100.0 + 10 * j + k);
  v = values(max(x, 2, KeepDim::yes));
  CHECK(max(x, 2, KeepDim::yes).shape() == Shape{2, 3, 1});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      CHECK(v[size_t(i * 3 + j)] == 100.0 * i + 10 * j + 3);
  Tensor m1 = max(x, 1, KeepDim::yes);
  CHECK(m1.shape() == Shape{2, 1, 4});
  v = values(m1);
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 4; ++k)
      CHECK(v[size_t(i * 4 + k)] == 100.0 * i + 20 + k);
  // Of a permuted view.
  CHECK(values(sum(permute(x, {2, 1, 0}), {2, 0})) == std::vector<double>{412, 492, 572});
}

TEST_CASE("ops: large sums match a naive double loop") {
  // [outer, r, inner] with inner > 256 (the blocked path) and enough work for OpenMP.
  for (const Shape& shape : std::vector<Shape>{{4, 5, 600}, {8, 40, 300}, {3, 40000}}) {
    Tensor x = randn(shape, RngKey{9, uint64_t(shape[1])});
    const auto xv = values(x);
    const int64_t outer = shape[0], r = shape[1], inner = shape.size() == 3 ? shape[2] : 1;
    Tensor s = sum(x, {1});
    const auto sv = values(s);
    REQUIRE(int64_t(sv.size()) == outer * inner);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        double ref = 0, mag = 0;
        for (int64_t j = 0; j < r; ++j) {
          ref += xv[size_t((o * r + j) * inner + i)];
          mag += std::abs(xv[size_t((o * r + j) * inner + i)]);
        }
        CHECK(std::abs(sv[size_t(o * inner + i)] - ref) <= 1e-6 * mag);
      }
  }
}

TEST_CASE("ops: sum_to") {
  Tensor x = coded_234();
  CHECK(sum_to(x, {2, 3, 4}).impl() == x.impl());
  CHECK(values(sum_to(x, {3, 1})) ==
        std::vector<double>{4 * 100 + 2 * 6, 4 * 100 + 80 + 12, 4 * 100 + 160 + 12});
  CHECK(values(sum_to(x, {4})) == values(sum(x, {0, 1})));
  CHECK(sum_to(x, {}).cpu().item() == 1476);
  CHECK(sum_to(x, {2, 1, 4}).shape() == Shape{2, 1, 4});
}

TEST_CASE("ops: cumsum") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(values(cumsum(x, 1)) == std::vector<double>{1, 3, 6, 4, 9, 15});
  CHECK(values(cumsum(x, 0)) == std::vector<double>{1, 2, 3, 5, 7, 9});
  CHECK(values(cumsum(x, -1)) == values(cumsum(x, 1)));
  CHECK(cumsum(arange(5), 0).cpu().to_vector<int64_t>() == std::vector<int64_t>{0, 1, 3, 6, 10});
  CHECK(cumsum(i32({1, 1, 1, 1}, {2, 2}), 0).cpu().to_vector<int32_t>() ==
        std::vector<int32_t>{1, 1, 2, 2});
  // Middle axis of [2, 3, 2]: running sums over j for every (i, k).
  Tensor y = cumsum(reshape(arange(12, DType::f32), {2, 3, 2}), 1);
  CHECK(values(y) == std::vector<double>{0, 1, 2, 4, 6, 9, 6, 7, 14, 16, 24, 27});
  // Of a transposed view: cumsum over rows of x^T.
  CHECK(values(cumsum(transpose(x, 0, 1), 1)) == std::vector<double>{1, 5, 2, 7, 3, 9});
}

// ---------------------------------------------------------------- matrix products

namespace {

// C[b] = op(A[b]) op(B[b or 0]) by the definition, in double.
template <class T>
void check_matmul_naive(int64_t batch, int64_t m, int64_t k, int64_t n, Trans ta, Trans tb,
                        bool b_batched, uint64_t seed) {
  const bool tra = ta == Trans::yes, trb = tb == Trans::yes;
  const DType dt = dtype_of<T>();
  Shape as = tra ? Shape{k, m} : Shape{m, k};
  Shape bs = trb ? Shape{n, k} : Shape{k, n};
  if (batch > 1 || b_batched) as.insert(as.begin(), batch);
  if (b_batched) bs.insert(bs.begin(), batch);
  Tensor a = randn(as, RngKey{seed, 1}, 0, dt), b = randn(bs, RngKey{seed, 2}, 0, dt);
  Tensor c = matmul(a, b, ta, tb);
  Shape expected = {m, n};
  if (batch > 1 || b_batched) expected.insert(expected.begin(), batch);
  REQUIRE(c.shape() == expected);
  REQUIRE(c.dtype() == dt);
  const auto av = values(a), bv = values(b), cv = values(c);
  const double rel = dt == DType::f32 ? 1e-6 : 1e-14;
  for (int64_t q = 0; q < batch; ++q)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0, mag = 0;
        for (int64_t p = 0; p < k; ++p) {
          const double x = av[size_t(q * m * k + (tra ? p * m + i : i * k + p))];
          const double y = bv[size_t((b_batched ? q * k * n : 0) + (trb ? j * k + p : p * n + j))];
          ref += x * y;
          mag += std::abs(x * y);
        }
        CHECK(std::abs(cv[size_t((q * m + i) * n + j)] - ref) <= rel * (mag + 1e-30) * double(k));
      }
}

}  // namespace

TEST_CASE("ops: matmul vs a naive triple loop") {
  uint64_t seed = 1;
  for (Trans ta : {Trans::no, Trans::yes}) {
    for (Trans tb : {Trans::no, Trans::yes}) {
      INFO("ta " << (ta == Trans::yes) << " tb " << (tb == Trans::yes));
      check_matmul_naive<float>(1, 7, 5, 3, ta, tb, false, seed++);
      check_matmul_naive<double>(1, 7, 5, 3, ta, tb, false, seed++);
      check_matmul_naive<float>(4, 7, 5, 3, ta, tb, true, seed++);
      check_matmul_naive<double>(4, 3, 1, 6, ta, tb, true, seed++);
      // Enough batched work for the OpenMP-over-batch path.
      check_matmul_naive<float>(8, 33, 17, 29, ta, tb, true, seed++);
    }
  }
  // One large product (OpenBLAS threads internally).
  check_matmul_naive<double>(1, 130, 70, 90, Trans::no, Trans::no, false, seed++);
}

TEST_CASE("ops: matmul [..., M, K] x [K, N] and edge sizes") {
  Tensor a = randn({2, 3, 7, 5}, RngKey{5, 1}, 0, DType::f64);
  Tensor b = randn({5, 3}, RngKey{5, 2}, 0, DType::f64);
  Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3, 7, 3});
  // Equal to the 2-D product of the flattened rows.
  CHECK(values(c) == values(matmul(reshape(a, {42, 5}), b)));
  Tensor ct = matmul(a, transpose(b, 0, 1).contiguous(), Trans::no, Trans::yes);
  const auto cv = values(c), ctv = values(ct);
  for (size_t i = 0; i < cv.size(); ++i)
    CHECK(ctv[i] == Approx(cv[i]).epsilon(1e-14));
  // K = 0 gives zeros; M = 0 gives an empty result.
  Tensor z = matmul(Tensor::zeros({3, 0}, DType::f32), Tensor::zeros({0, 4}, DType::f32));
  REQUIRE(z.shape() == Shape{3, 4});
  for (float v : z.cpu().to_vector<float>())
    CHECK(v == 0.0f);
  CHECK(matmul(Tensor::zeros({0, 2}), Tensor::zeros({2, 4})).shape() == Shape{0, 4});
  // linear with K = 0 is the bias on every row.
  CHECK(values(linear(Tensor::zeros({2, 0}, DType::f64), Tensor::zeros({0, 3}, DType::f64),
                      f64({1, 2, 3}, {3}))) == std::vector<double>{1, 2, 3, 1, 2, 3});
  // Identity.
  Tensor eye = one_hot(arange(3), 3, DType::f64);
  Tensor m = randn({3, 3}, RngKey{6, 0}, 0, DType::f64);
  CHECK(values(matmul(eye, m)) == values(m));
  CHECK(values(matmul(m, eye, Trans::yes, Trans::no)) == values(transpose(m, 0, 1)));
}

TEST_CASE("ops: linear equals matmul plus bias") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = randn({2, 3, 4}, RngKey{7, 1}, 0, dt);
    Tensor w = randn({4, 5}, RngKey{7, 2}, 0, dt);
    Tensor bias = randn({5}, RngKey{7, 3}, 0, dt);
    const auto y = values(linear(x, w, bias));
    const auto y0 = values(linear(x, w, Tensor()));
    const auto xw = values(matmul(x, w));
    const auto bv = values(bias);
    REQUIRE(linear(x, w, bias).shape() == Shape{2, 3, 5});
    const double tol = dt == DType::f32 ? 1e-5 : 1e-13;
    for (size_t i = 0; i < y.size(); ++i) {
      CHECK(std::abs(y[i] - (xw[i] + bv[i % 5])) <= tol);
      CHECK(std::abs(y0[i] - xw[i]) <= tol);
    }
  }
  // A strided bias (every other element of a buffer).
  Tensor buf = f64({1, -1, 2, -1, 3, -1}, {6});
  Tensor bias = Tensor::view_of(buf.storage(), {3}, {2}, 0, DType::f64);
  Tensor y = linear(Tensor::zeros({2, 2}, DType::f64), Tensor::zeros({2, 3}, DType::f64), bias);
  CHECK(values(y) == std::vector<double>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("ops: stacked_linear equals batched matmul plus broadcast bias, to the bit") {
  // The experts' second layer: its bias added as the product is stored must give the bits of
  // the composed matmul + add, forward and backward (the narrow kernel's shapes, then
  // OpenBLAS's: n 512 is not narrow), in f32 and f64.
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& [g, r, k, n] : std::vector<std::array<int64_t, 4>>{
             {8, 168, 128, 64}, {3, 40, 12, 20}, {2, 9, 64, 512}, {4, 0, 8, 5}}) {
      const RngKey key{21, uint64_t(g * 1000 + n)};
      auto leaf = [&](const Shape& s, uint64_t offset) {
        Tensor t = randn(s, key, offset, dt);
        t.set_requires_grad(true);
        return t;
      };
      Tensor x = leaf({g, r, k}, 0), w = leaf({g, k, n}, 1 << 20), b = leaf({g, n}, 1 << 21);
      Tensor gy = randn({g, r, n}, key, 1 << 22, dt);
      Tensor fused = stacked_linear(x, w, b);
      sum_all(mul(fused, gy)).backward();
      const std::vector<std::vector<double>> got = {values(fused), values(x.grad()),
                                                    values(w.grad()), values(b.grad())};
      Tensor x2 = leaf({g, r, k}, 0), w2 = leaf({g, k, n}, 1 << 20), b2 = leaf({g, n}, 1 << 21);
      Tensor composed = matmul(x2, w2) + reshape(b2, {g, 1, n});
      sum_all(mul(composed, gy)).backward();
      REQUIRE(fused.shape() == Shape{g, r, n});
      CHECK(got[0] == values(composed));
      CHECK(got[1] == values(x2.grad()));
      CHECK(got[2] == values(w2.grad()));
      CHECK(got[3] == values(b2.grad()));
      // Without a bias: the batched product.
      CHECK(values(stacked_linear(x.detach(), w.detach(), Tensor())) ==
            values(matmul(x.detach(), w.detach())));
    }
  }
  Tensor x = Tensor::zeros({2, 3, 4}), w = Tensor::zeros({2, 4, 5});
  CHECK_INVALID(stacked_linear(x, Tensor::zeros({3, 4, 5}), Tensor()), "does not match kernels");
  CHECK_INVALID(stacked_linear(x, w, Tensor::zeros({5})), "bias [5]");
  CHECK_INVALID(stacked_linear(Tensor::zeros({6, 4}), w, Tensor()), "x");
}

// ---------------------------------------------------------------- nn ops

TEST_CASE("ops: layer_norm normalises each row") {
  const int64_t rows = 5, d = 8;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = add_scalar(mul_scalar(randn({rows, d}, RngKey{8, 1}, 0, dt), 3.0), 1.5);
    const double eps = 1e-5;
    Tensor y = layer_norm(x, Tensor::full({d}, 1.0, dt), Tensor::zeros({d}, dt), eps);
    const auto xv = values(x), yv = values(y);
    const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
    for (int64_t r = 0; r < rows; ++r) {
      double mu = 0, var = 0, ym = 0, y2 = 0;
      for (int64_t j = 0; j < d; ++j)
        mu += xv[size_t(r * d + j)] / d;
      for (int64_t j = 0; j < d; ++j)
        var += std::pow(xv[size_t(r * d + j)] - mu, 2) / d;
      for (int64_t j = 0; j < d; ++j) {
        ym += yv[size_t(r * d + j)] / d;
        y2 += std::pow(yv[size_t(r * d + j)], 2) / d;
        CHECK(std::abs(yv[size_t(r * d + j)] -
                       (xv[size_t(r * d + j)] - mu) / std::sqrt(var + eps)) <= tol);
      }
      CHECK(std::abs(ym) <= tol);                      // mean 0
      CHECK(std::abs(y2 - var / (var + eps)) <= tol);  // variance var / (var + eps) ~ 1
    }
    // Scale and bias apply per column: y' = y * scale + bias.
    Tensor scale = randn({d}, RngKey{8, 2}, 0, dt), bias = randn({d}, RngKey{8, 3}, 0, dt);
    const auto ys = values(layer_norm(x, scale, bias, eps));
    const auto sv = values(scale), bv = values(bias);
    for (size_t i = 0; i < ys.size(); ++i)
      CHECK(std::abs(ys[i] - (yv[i] * sv[i % d] + bv[i % d])) <= 10 * tol);
  }
  // A constant row normalises to the bias (x - mean = 0), not NaN.
  Tensor c = layer_norm(Tensor::full({1, 4}, 7.0, DType::f64), Tensor::full({4}, 2.0, DType::f64),
                        f64({1, 2, 3, 4}, {4}), 1e-6);
  CHECK(values(c) == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("ops: softmax and log_softmax") {
  for (DType dt : {DType::f32, DType::f64}) {
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    Tensor x = mul_scalar(randn({4, 7}, RngKey{10, 1}, 0, dt), 4.0);
    const auto xv = values(x), yv = values(softmax(x)), lv = values(log_softmax(x));
    for (int r = 0; r < 4; ++r) {
      double s = 0;
      for (int j = 0; j < 7; ++j) {
        const double y = yv[size_t(r * 7 + j)];
        CHECK(y > 0);
        s += y;
        // y_j / y_0 = exp(x_j - x_0); log_softmax = log(softmax).
        CHECK(
            std::abs(y / yv[size_t(r * 7)] - std::exp(xv[size_t(r * 7 + j)] - xv[size_t(r * 7)])) <=
            100 * tol * std::exp(xv[size_t(r * 7 + j)] - xv[size_t(r * 7)]));
        CHECK(std::abs(lv[size_t(r * 7 + j)] - std::log(y)) <= 10 * tol);
      }
      CHECK(std::abs(s - 1) <= 10 * tol);
    }
  }
  // Large inputs stay finite: softmax is shift invariant.
  const double e = std::exp(1.0), z = 1 + e + e * e;
  const auto big = values(softmax(f32({1000, 1001, 1002, -1000, -1000, -1000}, {2, 3})));
  const std::vector<double> expect = {1 / z, e / z, e * e / z, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  for (size_t i = 0; i < big.size(); ++i)
    CHECK(big[i] == Approx(expect[i]).epsilon(1e-6));
  const auto lbig = values(log_softmax(f32({1000, 1000, -1e30f}, {3})));
  CHECK(lbig[0] == Approx(-std::log(2.0)).epsilon(1e-6));
  CHECK(lbig[1] == Approx(-std::log(2.0)).epsilon(1e-6));
  CHECK(std::isfinite(lbig[2]));
  // Softmax over the last axis of a 3-D tensor.
  Tensor s3 = softmax(Tensor::zeros({2, 3, 4}, DType::f64));
  for (double v : values(s3))
    CHECK(v == 0.25);
}

TEST_CASE("ops: cross-entropies against the closed form") {
  // softmax: mean over the batch of logsumexp(row) - row[label].
  Tensor logits = f64({1, 2, 3, 0, 0, 0, -1, 5, 2}, {3, 3});
  Tensor labels = i32({2, 1, 0}, {3});
  const double e = std::exp(1.0);
  const double l0 = std::log(e + e * e + e * e * e) - 3;
  const double l1 = std::log(3.0);
  const double l2 = std::log(std::exp(-1.0) + std::exp(5.0) + std::exp(2.0)) + 1;
  Tensor loss = softmax_cross_entropy(logits, labels);
  CHECK(loss.shape() == Shape{});
  CHECK(loss.cpu().item() == Approx((l0 + l1 + l2) / 3).epsilon(1e-14));
  // Uniform logits: log C.
  CHECK(softmax_cross_entropy(Tensor::zeros({4, 10}, DType::f32), i32({0, 3, 9, 9}, {4}))
            .cpu()
            .item() == Approx(std::log(10.0)).epsilon(1e-6));
  // Large logits stay finite.
  Tensor big = f32({1000, 0, 0, 1000, 0, 0}, {2, 3});
  CHECK(softmax_cross_entropy(big, i32({0, 0}, {2})).cpu().item() == Approx(0.0).margin(1e-6));
  CHECK(softmax_cross_entropy(big, i32({1, 1}, {2})).cpu().item() == Approx(1000.0).epsilon(1e-6));
  // ... and keep f32 relative precision when the logits are large but close:
  // loss = log(1 + e^-0.5), not rounded to the ulp of 1000 (6e-5).
  CHECK(softmax_cross_entropy(f32({1000.5f, 1000}, {1, 2}), i32({0}, {1})).cpu().item() ==
        Approx(std::log1p(std::exp(-0.5))).epsilon(1e-6));

  // sigmoid: sum over classes of -y log s(x) - (1 - y) log(1 - s(x)), mean over the batch.
  auto bce = [](double x, double y) {
    const double s = 1 / (1 + std::exp(-x));
    return -y * std::log(s) - (1 - y) * std::log(1 - s);
  };
  const double s0 = bce(1, 0) + bce(2, 0) + bce(3, 1);
  const double s1 = bce(0, 0) + bce(0, 1) + bce(0, 0);
  const double s2 = bce(-1, 1) + bce(5, 0) + bce(2, 0);
  CHECK(sigmoid_cross_entropy(logits, labels).cpu().item() ==
        Approx((s0 + s1 + s2) / 3).epsilon(1e-13));
  // Zero logits: C log 2.
  CHECK(sigmoid_cross_entropy(Tensor::zeros({2, 5}, DType::f64), i32({1, 4}, {2})).cpu().item() ==
        Approx(5 * std::log(2.0)).epsilon(1e-14));
  // Saturated logits: right ones cost ~0, wrong ones cost |x| each, never inf.
  Tensor sat = f32({100, -100, -100}, {1, 3});
  CHECK(sigmoid_cross_entropy(sat, i32({0}, {1})).cpu().item() == Approx(0.0).margin(1e-6));
  CHECK(sigmoid_cross_entropy(sat, i32({1}, {1})).cpu().item() == Approx(200.0).epsilon(1e-6));
}

TEST_CASE("ops: dropout masks") {
  const double rate = 0.25;
  Tensor x = Tensor::full({200000}, 1.0, DType::f32);
  const auto y = values(dropout(x, rate, RngKey{11, 0}));
  int64_t kept = 0, other = 0;  // other: neither 0 nor 1 / (1 - rate)
  for (double v : y) {
    kept += v != 0.0;
    other += v != 0.0 && std::abs(v - 1 / (1 - rate)) > 1e-6;
  }
  CHECK(other == 0);
  // Fraction kept within ~5 standard deviations of 1 - rate (sd ~ 1e-3).
  CHECK(std::abs(double(kept) / double(y.size()) - (1 - rate)) < 0.005);
  // The expected value is preserved: mean ~ 1.
  double mean_y = 0;
  for (double v : y)
    mean_y += v / double(y.size());
  CHECK(std::abs(mean_y - 1) < 0.01);
  // Rate 0 is the identity (the same tensor).
  CHECK(dropout(x, 0.0, RngKey{11, 0}).impl() == x.impl());
  // Different keys give different masks.
  CHECK(values(dropout(x, rate, RngKey{11, 1})) != y);
}

TEST_CASE("ops: image_to_patches layout") {
  // image[b, y, x, c] = 1000 b + 100 y + 10 x + c.
  const int64_t B = 2, H = 4, W = 6, C = 3, p = 2, gh = H / p, gw = W / p;
  std::vector<double> img;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < C; ++c)
          img.push_back(double(1000 * b + 100 * y + 10 * x + c));
  Tensor out = image_to_patches(f64(img, {B, H, W, C}), p);
  REQUIRE(out.shape() == Shape{B, gh * gw, p * p * C});
  const auto v = values(out);
  // Patch n = gy * gw + gx (row-major over the grid); inside it (py, px, c) order.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t gy = 0; gy < gh; ++gy)
      for (int64_t gx = 0; gx < gw; ++gx)
        for (int64_t py = 0; py < p; ++py)
          for (int64_t px = 0; px < p; ++px)
            for (int64_t c = 0; c < C; ++c) {
              const int64_t n = gy * gw + gx, e = (py * p + px) * C + c;
              CHECK(v[size_t((b * gh * gw + n) * p * p * C + e)] ==
                    double(1000 * b + 100 * (gy * p + py) + 10 * (gx * p + px) + c));
            }
  // Patch size 1 is a reshape; patch size = image size is one patch per image.
  CHECK(values(image_to_patches(f64(img, {B, H, W, C}), 1)) == img);
  Tensor whole = image_to_patches(f64(img, {B, H, W, C}).slice(2, 0, 4), 4);
  CHECK(whole.shape() == Shape{B, 1, 16 * C});
}

// ---------------------------------------------------------------- indexing

TEST_CASE("ops: topk order and ties") {
  Tensor x = f32({1, 3, 3, 2, 3, 3, 2, 3, 3, 1}, {2, 5});
  // Equal values keep the lower index first.
  TopK t3 = topk(x, 3);
  CHECK(t3.indices.shape() == Shape{2, 3});
  CHECK(t3.indices.dtype() == DType::i64);
  CHECK(t3.indices.cpu().to_vector<int64_t>() == std::vector<int64_t>{1, 2, 4, 0, 2, 3});
  CHECK(values(t3.values) == std::vector<double>{3, 3, 3, 3, 3, 3});
  TopK t5 = topk(x, 5);
  CHECK(t5.indices.cpu().to_vector<int64_t>() ==
        std::vector<int64_t>{1, 2, 4, 3, 0, 0, 2, 3, 1, 4});
  CHECK(values(t5.values) == std::vector<double>{3, 3, 3, 2, 1, 3, 3, 3, 2, 1});
  // Descending order for distinct values, also with recording on.
  Tensor d = f64({0.5, -1, 4, 2, 3}, {5});
  d.set_requires_grad(true);
  TopK td = topk(d, 4);
  CHECK(td.indices.cpu().to_vector<int64_t>() == std::vector<int64_t>{2, 4, 3, 0});
  CHECK(values(td.values) == std::vector<double>{4, 3, 2, 0.5});
  // Of a transposed view: rows of x^T.
  TopK tt = topk(transpose(f32({1, 5, 2, 3, 4, 0}, {2, 3}), 0, 1), 1);
  CHECK(tt.indices.cpu().to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0});
}

TEST_CASE("ops: topk equals a stable sort's first k, for every k and many ties") {
  // Few distinct values, so that most rows tie; k above 8 takes the kernel's other path.
  for (const int64_t n : {1, 3, 8, 9, 16}) {
    const int64_t rows = 40;
    std::vector<float> v(static_cast<size_t>(rows * n));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = float((i * 7919 + i / 3) % 5) - 2.0f;
    const Tensor x = f32(v, {rows, n});
    for (int64_t k = 1; k <= n; ++k) {
      const TopK t = topk(x, k);
      const auto idx = t.indices.cpu().to_vector<int64_t>();
      const auto val = values(t.values);
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<int64_t> order(static_cast<size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        const float* row = v.data() + r * n;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return row[a] > row[b]; });
        for (int64_t j = 0; j < k; ++j) {
          INFO("n " << n << " k " << k << " row " << r << " rank " << j);
          CHECK(idx[size_t(r * k + j)] == order[size_t(j)]);
          CHECK(val[size_t(r * k + j)] == double(row[order[size_t(j)]]));
        }
      }
    }
  }
}

TEST_CASE("ops: argsort is stable") {
  Tensor x = f32({2, 1, 2, 0, 1}, {5});
  CHECK(argsort(x).cpu().to_vector<int64_t>() == std::vector<int64_t>{3, 1, 4, 0, 2});
  CHECK(argsort(x, Order::descending).cpu().to_vector<int64_t>() ==
        std::vector<int64_t>{0, 2, 1, 4, 3});
  // Integer keys, per row.
  Tensor xi = i32({5, 5, 5, 1, 9, 1}, {2, 3});
  CHECK(argsort(xi).cpu().to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 0, 2, 1});
  CHECK(argsort(xi, Order::descending).cpu().to_vector<int64_t>() ==
        std::vector<int64_t>{0, 1, 2, 1, 0, 2});
  // A long row of few distinct keys: equal keys stay in index order.
  const int64_t n = 1000;
  std::vector<int64_t> keys(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    keys[size_t(i)] = (i * 7) % 3;
  const auto order = argsort(i64(keys, {n})).cpu().to_vector<int64_t>();
  for (int64_t i = 1; i < n; ++i) {
    const int64_t a = order[size_t(i - 1)], b = order[size_t(i)];
    CHECK((keys[size_t(a)] < keys[size_t(b)] || (keys[size_t(a)] == keys[size_t(b)] && a < b)));
  }
}

TEST_CASE("ops: argmax and one_hot") {
  CHECK(argmax(f32({1, 5, 5, 2, -1, -3, -2, -1}, {2, 4})).cpu().to_vector<int64_t>() ==
        std::vector<int64_t>{1, 0});
  CHECK(argmax(f64({3}, {1})).cpu().to_vector<int64_t>() == std::vector<int64_t>{0});
  CHECK(argmax(f64({1, 2, 3}, {3})).shape() == Shape{});
  Tensor oh = one_hot(i32({2, 0, 1}, {3}), 3);
  CHECK(oh.dtype() == DType::f32);
  CHECK(oh.cpu().to_vector<float>() == std::vector<float>{0, 0, 1, 1, 0, 0, 0, 1, 0});
  Tensor oh2 = one_hot(i64({3, 0, 1, 1}, {2, 2}), 4, DType::f64);
  CHECK(oh2.shape() == Shape{2, 2, 4});
  CHECK(values(oh2) == std::vector<double>{0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0});
  // argmax inverts one_hot.
  CHECK(argmax(oh2).cpu().to_vector<int64_t>() == std::vector<int64_t>{3, 0, 1, 1});
}

TEST_CASE("ops: index_select, index_add, gather values") {
  // x[r] = {10 r, 10 r + 1}.
  Tensor x = f64({0, 1, 10, 11, 20, 21, 30, 31}, {4, 2});
  for (Tensor idx : {i64({3, -1, 0, 3}, {4}), to_dtype(i64({3, -1, 0, 3}, {4}), DType::i32)}) {
    Tensor s = index_select(x, idx);
    CHECK(s.shape() == Shape{4, 2});
    CHECK(values(s) == std::vector<double>{30, 31, 0, 0, 0, 1, 30, 31});
  }
  // Rows of a 3-D tensor and an empty selection.
  Tensor x3 = reshape(arange(12, DType::f64), {3, 2, 2});
  CHECK(values(index_select(x3, i32({2, 0}, {2}))) ==
        std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3});
  CHECK(index_select(x3, i64({}, {0})).shape() == Shape{0, 2, 2});
  // From no rows at all, -1 indices still give zero rows.
  CHECK(values(index_select(Tensor::zeros({0, 2}, DType::f64), i64({-1, -1}, {2}))) ==
        std::vector<double>{0, 0, 0, 0});
  // index_add: out[idx[m]] += src[m]; -1 skipped; repeated rows add up.
  Tensor src = f64({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2});
  Tensor out = index_add(3, i64({1, -1, 1, 0}, {4}), src);
  CHECK(out.shape() == Shape{3, 2});
  CHECK(values(out) == std::vector<double>{7, 8, 1 + 5, 2 + 6, 0, 0});
  // Many repeats of one row with wide rows (the column-chunked parallel path).
  const int64_t m = 300, w = 256;
  Tensor ones = Tensor::full({m, w}, 1.0, DType::f32);
  std::vector<int64_t> to_row(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i)
    to_row[size_t(i)] = i % 3 == 2 ? -1 : i % 3;
  const auto acc = values(index_add(2, i64(to_row, {m}), ones));
  for (int64_t c = 0; c < w; ++c) {
    CHECK(acc[size_t(c)] == 100);
    CHECK(acc[size_t(w + c)] == 100);
  }
  // gather along the last axis.
  Tensor g = gather(f64({1, 2, 3, 4, 5, 6}, {2, 3}), i64({2, 2, 0, 1, 0, 2}, {2, 3}));
  CHECK(values(g) == std::vector<double>{3, 3, 1, 5, 4, 6});
  Tensor g1 = gather(f64({1, 2, 3, 4, 5, 6}, {2, 3}), i32({1, 2}, {2, 1}));
  CHECK(g1.shape() == Shape{2, 1});
  CHECK(values(g1) == std::vector<double>{2, 6});
}

TEST_CASE("ops: concat and split") {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({5, 6}, {2, 1});
  Tensor c = concat({a, b, a}, 1);
  CHECK(c.shape() == Shape{2, 5});
  CHECK(values(c) == std::vector<double>{1, 2, 5, 1, 2, 3, 4, 6, 3, 4});
  CHECK(values(concat({a, transpose(a, 0, 1)}, 0)) == std::vector<double>{1, 2, 3, 4, 1, 3, 2, 4});
  std::vector<Tensor> parts = split(c, {2, 1, 2}, -1);
  REQUIRE(parts.size() == 3);
  CHECK(values(parts[0]) == values(a));
  CHECK(values(parts[1]) == values(b));
  CHECK(values(parts[2]) == values(a));
  // The parts are views of c.
  CHECK(parts[1].storage() == c.storage());
  CHECK(split(c, {0, 5}, 1)[0].shape() == Shape{2, 0});
}

// ---------------------------------------------------------------- views, copies, dtypes

TEST_CASE("ops: views share storage") {
  Tensor base = Tensor::zeros({4, 5}, DType::f32);
  // Writing through a row slice changes the base.
  Tensor rows = slice(base, 0, 1, 3);
  CHECK(rows.storage() == base.storage());
  CHECK(rows.offset() == 5);
  fill_(rows, 7.0);
  auto v = base.cpu().to_vector<float>();
  for (int i = 0; i < 20; ++i)
    CHECK(v[size_t(i)] == (i >= 5 && i < 15 ? 7.0f : 0.0f));
  // Through a column of a transposed view: base[:, 4] = {1, 2, 3, 4}.
  Tensor col = slice(transpose(base, 0, 1), 0, 4, 5);
  CHECK(col.shape() == Shape{1, 4});
  copy_(col, f32({1, 2, 3, 4}, {1, 4}));
  v = base.cpu().to_vector<float>();
  for (int r = 0; r < 4; ++r)
    CHECK(v[size_t(r * 5 + 4)] == float(r + 1));
  CHECK(v[3] == 0.0f);
  // reshape of a contiguous tensor, permute, detach and expand are views too.
  Tensor flat = reshape(base, {20});
  CHECK(flat.storage() == base.storage());
  fill_(flat, 2.0);
  CHECK(base.cpu().to_vector<float>()[13] == 2.0f);
  CHECK(permute(base, {1, 0}).storage() == base.storage());
  CHECK(base.detach().storage() == base.storage());
  Tensor e = expand(f32({1, 2, 3}, {3, 1}), {2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(values(e)[size_t(1 * 12 + 2 * 4 + 3)] == 3.0);
  // A slice of a slice keeps the offsets.
  Tensor ss = slice(slice(base, 1, 1, 5), 1, 2, 4);
  CHECK(ss.offset() == 3);
  CHECK(ss.shape() == Shape{4, 2});
}

TEST_CASE("ops: contiguous copies of permuted views") {
  Tensor x = reshape(arange(24, DType::f32), {2, 3, 4});
  Tensor p = permute(x, {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK_FALSE(p.is_contiguous());
  Tensor c = contiguous(p);
  CHECK(c.is_contiguous());
  CHECK(c.storage() != x.storage());
  CHECK(c.strides() == Shape{6, 3, 1});
  const auto cv = c.cpu().to_vector<float>();
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        CHECK(cv[size_t(k * 6 + i * 3 + j)] == float(i * 12 + j * 4 + k));
  // A copy: later writes to x do not reach it.
  fill_(x, -1.0);
  CHECK(c.cpu().to_vector<float>() == cv);
  // contiguous of a contiguous tensor is the tensor itself.
  CHECK(contiguous(x).impl() == x.impl());
  // reshape of a non-contiguous view copies.
  Tensor r = reshape(transpose(reshape(arange(6, DType::f32), {2, 3}), 0, 1), {6});
  CHECK(r.cpu().to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(reshape(x, {-1, 6}).shape() == Shape{4, 6});
}

TEST_CASE("ops: bf16 round trip via to_dtype") {
  const float tie_down = 1.0f + 1.0f / 256;  // halfway between 1 and 1 + 2^-7 -> 1 (even)
  const float tie_up = 1.0f + 3.0f / 256;    // halfway between 1 + 2^-7 and 1 + 2^-6 -> up
  const std::vector<float> xs = {1.0f,     -2.0f,  0.5f,    3.0f,  tie_down,  tie_up,
                                 3.14159f, -1e-3f, 65504.f, 1e30f, -7.25e-20f};
  Tensor x = f32(xs, {int64_t(xs.size())});
  Tensor h = to_dtype(x, DType::bf16);
  CHECK(h.dtype() == DType::bf16);
  CHECK(h.storage()->bytes() == xs.size() * 2);
  const auto back = to_dtype(h, DType::f32).cpu().to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    INFO("x = " << xs[i]);
    // 8 significant bits, round to nearest: relative error at most 2^-8 (half an ulp).
    CHECK(std::abs(back[i] - xs[i]) <= std::ldexp(std::abs(xs[i]), -8));
  }
  CHECK(back[0] == 1.0f);
  CHECK(back[1] == -2.0f);
  CHECK(back[2] == 0.5f);
  CHECK(back[3] == 3.0f);
  CHECK(back[4] == 1.0f);
  CHECK(back[5] == 1.0f + 1.0f / 64);
  // Through f64 as well, and inf / NaN survive.
  const auto b64 = values(to_dtype(to_dtype(f64({0.1, -1e5}, {2}), DType::bf16), DType::f64));
  CHECK(std::abs(b64[0] - 0.1) <= 0.1 / 256);
  CHECK(std::abs(b64[1] + 1e5) <= 1e5 / 256);
  const float inf = std::numeric_limits<float>::infinity();
  const auto special =
      to_dtype(to_dtype(f32({inf, -inf, std::nanf("")}, {3}), DType::bf16), DType::f32)
          .cpu()
          .to_vector<float>();
  CHECK(special[0] == inf);
  CHECK(special[1] == -inf);
  CHECK(std::isnan(special[2]));
  // to_bf16 / from_bf16 agree with to_dtype.
  CHECK(from_bf16(to_bf16(tie_up)) == back[5]);
}

TEST_CASE("ops: dtype_size, dtype_name, parse_dtype") {
  CHECK(dtype_size(DType::f32) == 4);
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::f64) == 8);
  CHECK(dtype_size(DType::i32) == 4);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(dtype_size(DType::u8) == 1);
  for (DType t : {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8})
    CHECK(parse_dtype(dtype_name(t)) == t);
  CHECK(std::string(dtype_name(DType::bf16)) == "bf16");
  CHECK(is_floating(DType::bf16));
  CHECK_FALSE(is_floating(DType::i64));
  CHECK_INVALID(parse_dtype("f16"), "unknown dtype 'f16'");
  CHECK_INVALID(parse_dtype(""), "unknown dtype ''");
  // Tensor sizes follow the dtype.
  CHECK(Tensor::empty({3, 5}, DType::u8).storage()->bytes() == 15);
  CHECK(Tensor::empty({3, 5}, DType::i64).storage()->bytes() == 120);
}

// ---------------------------------------------------------------- errors

TEST_CASE("ops errors: shapes that do not broadcast") {
  Tensor a = Tensor::zeros({3, 4}), b = Tensor::zeros({5});
  CHECK_INVALID(add(a, b), "add: shapes [3, 4] and [5] do not broadcast");
  CHECK_INVALID(mul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2})), "do not broadcast");
  CHECK_INVALID(div(b, a), "div: shapes [5] and [3, 4] do not broadcast");
}

TEST_CASE("ops errors: matmul sizes") {
  CHECK_INVALID(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), "inner sizes differ");
  CHECK_INVALID(matmul(Tensor::zeros({2, 3}), Tensor::zeros({2, 5}), Trans::no, Trans::yes),
                "inner sizes differ: [2, 3] f32 x [2, 5] f32^T");
  CHECK_INVALID(matmul(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5})), "batch sizes differ");
  CHECK_INVALID(matmul(Tensor::zeros({3}), Tensor::zeros({3, 4})), "unsupported ranks");
  CHECK_INVALID(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}), Tensor()),
                "does not match kernel");
  CHECK_INVALID(linear(Tensor::zeros({2, 4}), Tensor::zeros({4, 5}), Tensor::zeros({4})),
                "bias [4] f32 does not match kernel [4, 5] f32");
}

TEST_CASE("ops errors: dtype mismatch") {
  Tensor a = Tensor::zeros({2, 2}, DType::f32), b = Tensor::zeros({2, 2}, DType::f64);
  CHECK_INVALID(add(a, b), "add: dtype mismatch: [2, 2] f32 and [2, 2] f64");
  CHECK_INVALID(matmul(a, b), "dtype mismatch");
  CHECK_INVALID(concat({a, b}, 0), "dtype mismatch");
  CHECK_INVALID(add_(a, b), "dtype mismatch");
  CHECK_INVALID(exp(Tensor::zeros({2}, DType::i32)), "x must be f32 or f64");
  CHECK_INVALID(a.data<double>(), "accessed as f64");
  CHECK_INVALID(Tensor::zeros({2}, DType::i64).set_requires_grad(true),
                "only floating tensors can require grad");
}

TEST_CASE("ops errors: labels out of range in cross-entropy") {
  Tensor logits = Tensor::zeros({2, 3});
  // Label values are checked by the kernels: at once on the CPU, at the next
  // check_kernel_errors on a device the host cannot read.
  CHECK_KERNEL_ERROR(softmax_cross_entropy(logits, i32({0, 3}, {2})),
                     "softmax_cross_entropy: label 3 at position 1 is outside [0, 3)");
  CHECK_KERNEL_ERROR(sigmoid_cross_entropy(logits, i32({-1, 0}, {2})),
                     "sigmoid_cross_entropy: label -1 at position 0 is outside [0, 3)");
  CHECK_INVALID(softmax_cross_entropy(logits, i64({0, 1}, {2})), "labels must be i32");
  CHECK_INVALID(softmax_cross_entropy(logits, i32({0, 1, 2}, {3})), "do not match logits");
}

TEST_CASE("ops errors: indices out of range") {
  Tensor x = Tensor::zeros({4, 2});
  // Index values are checked by the kernels (see the cross-entropy labels above).
  CHECK_KERNEL_ERROR(index_select(x, i64({0, 4}, {2})),
                     "index_select: index 4 at position 1 is outside [-1, 4)");
  CHECK_KERNEL_ERROR(index_select(x, i32({-2}, {1})),
                     "index_select: index -2 at position 0 is outside [-1, 4)");
  CHECK_KERNEL_ERROR(index_add(3, i64({0, 3}, {2}), x.slice(0, 0, 2)),
                     "index_add: index 3 at position 1 is outside [-1, 3)");
  CHECK_KERNEL_ERROR(gather(Tensor::zeros({2, 2}), i64({0, 2, 1, 1}, {2, 2})),
                     "gather: index 2 at position 1 is outside [0, 2)");
  CHECK_KERNEL_ERROR(one_hot(i32({0, 5}, {2}), 5),
                     "one_hot: index 5 at position 1 is outside [0, 5)");
  // Argument errors are the op layer's, thrown at once on every device.
  CHECK_INVALID(index_select(x, Tensor::zeros({2})), "idx must be i32 or i64");
  CHECK_INVALID(index_add(3, i64({0, 1}, {2}), x), "needs one row per index");
  CHECK_INVALID(gather(x, i64({0, 1}, {2, 1})), "differ outside the last axis");
}

TEST_CASE("ops errors: topk k out of range") {
  Tensor x = Tensor::zeros({2, 5});
  CHECK_INVALID(topk(x, 6), "k = 6 must be in [1, 5]");
  CHECK_INVALID(topk(x, 0), "k = 0 must be in [1, 5]");
}

TEST_CASE("ops errors: reshape, slice, views") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_INVALID(reshape(x, {4, 2}), "cannot reshape [2, 3] f32 to [4, 2]");
  CHECK_INVALID(reshape(x, {4, -1}), "cannot reshape [2, 3] f32 to [4, -1]");
  CHECK_INVALID(reshape(x, {-1, -1}), "more than one -1");
  CHECK_INVALID(slice(x, 1, 2, 4), "range [2, 4) out of bounds for axis 1 of [2, 3] f32");
  CHECK_INVALID(slice(x, 0, 2, 1), "out of bounds");
  CHECK_INVALID(slice(x, 0, -1, 1), "out of bounds");
  CHECK_INVALID(slice(x, 2, 0, 1), "axis 2 out of range for rank 2");
  CHECK_INVALID(permute(x, {0, 0}), "axis repeated");
  CHECK_INVALID(permute(x, {0}), "order has 1 axes");
  CHECK_INVALID(expand(x, {2, 4}), "cannot expand [2, 3] f32 to [2, 4]");
  CHECK_INVALID(concat({x, Tensor::zeros({3, 3})}, 1), "differ outside axis 1");
  CHECK_INVALID(split(x, {1, 1}, 1), "sizes sum to 2");
  CHECK_INVALID(sum(x, {2}), "axis 2 out of range for rank 2");
  CHECK_INVALID(copy_(x, Tensor::zeros({3, 2})), "copy_: shape mismatch");
  CHECK_INVALID(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}),
                "3 values do not fill shape [2, 2]");
  CHECK_INVALID(x.cpu().item(), "item() needs one element");
}

TEST_CASE("ops errors: nn ops") {
  CHECK_INVALID(layer_norm(Tensor::zeros({2, 4}), Tensor::zeros({3}), Tensor::zeros({4}), 1e-6),
                "scale/bias [3] f32 do not match x [2, 4] f32");
  CHECK_INVALID(dropout(Tensor::zeros({2}), 1.0, RngKey{}), "rate must be in [0, 1)");
  CHECK_INVALID(image_to_patches(Tensor::zeros({1, 4, 6, 3}), 4), "patch size 4 does not tile");
  CHECK_INVALID(image_to_patches(Tensor::zeros({4, 6, 3}), 2), "must have rank 4");
  CHECK_INVALID(softmax(Tensor::zeros({2, 0})), "needs a non-empty last axis");
}

// ---------------------------------------------------------------- threading

TEST_CASE("ops: kernels give the same results with 1 and 4 OpenMP threads") {
  // ctest runs with OMP_NUM_THREADS=1; force both settings so that the parallel paths (above
  // the kernels' grain of 32k elements) are exercised and compared with the serial ones.
  struct Outputs {
    std::vector<std::vector<double>> v;
  };
  auto run = [](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Outputs o;
    const RngKey key{77, 1};
    Tensor x = randn({256, 160}, key, 0, DType::f64);  // 40960 elements
    x.set_requires_grad(true);
    Tensor scale = randn({160}, key, 50000, DType::f64),
           bias = randn({160}, key, 60000, DType::f64);
    scale.set_requires_grad(true);
    bias.set_requires_grad(true);
    Tensor r = randn({256, 160}, key, 70000, DType::f64);
    Tensor y = layer_norm(x, scale, bias, 1e-5);
    Tensor s = softmax(gelu(y));
    sum_all(mul(s, r)).backward();
    o.v.push_back(values(y));
    o.v.push_back(values(s));
    o.v.push_back(values(x.grad()));
    o.v.push_back(values(scale.grad()));
    o.v.push_back(values(bias.grad()));
    o.v.push_back(values(sum(x.detach(), {0})));
    o.v.push_back(values(sum(reshape(x.detach(), {1024, 40}), {0})));  // rows in 4 chunks
    o.v.push_back(values(exp(x.detach())));
    o.v.push_back(values(randn({100000}, key, 3)));
    o.v.push_back(values(dropout(Tensor::full({100000}, 1.0), 0.5, key)));
    std::vector<int64_t> rows(256);
    for (size_t i = 0; i < rows.size(); ++i)
      rows[i] = int64_t(i % 7) - 1;  // -1 .. 5
    o.v.push_back(values(index_add(6, i64(rows, {256}), x.detach())));
    o.v.push_back(values(index_select(x.detach(), i64(rows, {256}))));
    o.v.push_back(values(topk(x.detach(), 5).indices));
    o.v.push_back(values(argsort(x.detach(), Order::descending)));
    o.v.push_back(values(
        matmul(randn({16, 40, 30}, key, 0, DType::f64), randn({16, 30, 50}, key, 1, DType::f64))));
    o.v.push_back(values(image_to_patches(reshape(x.detach(), {4, 32, 32, 10}), 4)));
    o.v.push_back(values(cumsum(x.detach(), 0)));
    omp_set_num_threads(before);
    return o;
  };
  const Outputs one = run(1), four = run(4);
  REQUIRE(one.v.size() == four.v.size());
  for (size_t k = 0; k < one.v.size(); ++k) {
    INFO("output " << k);
    REQUIRE(one.v[k].size() == four.v[k].size());
    double worst = 0;
    for (size_t i = 0; i < one.v[k].size(); ++i)
      worst = std::max(worst, std::abs(one.v[k][i] - four.v[k][i]) / (1 + std::abs(one.v[k][i])));
    // Bit for bit: no kernel's result depends on the thread count (layer norm's parameter
    // gradients are summed per fixed block of rows, not per thread).
    CHECK(worst == 0);
  }
}

TEST_CASE("ops: f32 sums accumulate in double") {
  // Column [1e8, 1, 1, 1, -1e8] (all exact in f32) sums to 3; an f32 accumulator loses the
  // ones against 1e8 (its ulp there is 8) and returns 0.
  const std::vector<float> col = {1e8f, 1, 1, 1, -1e8f};
  std::vector<float> v2, v3;
  for (float c : col)
    v2.insert(v2.end(), {c, 2 * c});  // [5, 2]: the blocked path
  for (float c : col)
    for (int k = 0; k < 6; ++k)
      v3.push_back(c);  // [5, 2, 3] summed over {0, 2}: general path
  CHECK(sum(f32(v2, {5, 2}), {0}).cpu().to_vector<float>() == std::vector<float>{3, 6});
  CHECK(sum(f32(v3, {5, 2, 3}), {0, 2}).cpu().to_vector<float>() == std::vector<float>{9, 9});
  CHECK(sum(f32(col, {5}), {0}).cpu().item() == 3.0);  // the one-row path
  CHECK(sum_to(f32(v2, {5, 2}), {1, 2}).cpu().to_vector<float>() == std::vector<float>{3, 6});
}

TEST_CASE("ops: the FLOP count holds every GEMM of a forward and backward pass") {
  // linear x [6, 5] . w [5, 3]: forward 2*6*5*3; backward dx = gy w^T and dw = x^T gy, the
  // same again each; a batched matmul [4, 2, 3] x [4, 3, 7] adds 2*4*2*3*7 forward only.
  Tensor x = randn({6, 5}, RngKey{1, 1}).set_requires_grad(true);
  Tensor w = randn({5, 3}, RngKey{1, 2}).set_requires_grad(true);
  Tensor a = randn({4, 2, 3}, RngKey{1, 3});
  Tensor b = randn({4, 3, 7}, RngKey{1, 4});
  FlopCount count;
  sum_all(linear(x, w, Tensor())).backward();
  CHECK(count.flops() == 3 * 2 * 6 * 5 * 3);
  matmul(a, b);
  CHECK(count.flops() == 3 * 2 * 6 * 5 * 3 + 2 * 4 * 2 * 3 * 7);
  CHECK_THROWS_WITH(FlopCount(), Contains("already counting"));
}
