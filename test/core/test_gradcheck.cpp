// Finite-difference gradient tests in f64 for every differentiable op of core/ops.h.
//
// Ops covered (45), each in a TEST_CASE named "gradcheck: <op>" (some cases cover a group):
//   views/copies (9):  reshape, permute, transpose, slice, expand, contiguous, concat, split,
//                      to_dtype
//   binary (4):        add, sub, mul, div (broadcasting both ways, scalars)
//   scalar (2):        add_scalar, mul_scalar
//   unary (10):        neg, exp, log, tanh, sigmoid, relu, sqrt, square, gelu, normal_cdf
//   reductions (7):    sum, mean, max, sum_all, mean_all, sum_to, cumsum
//   products (2):      matmul, linear
//   nn (7):            softmax, log_softmax, layer_norm, softmax_cross_entropy,
//                      sigmoid_cross_entropy, dropout, image_to_patches
//   indexing (4):      index_select, index_add, gather, topk (values)
// Plus: the operator shorthands of ops.h and a small composite network.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "test/core/gradcheck.h"

using namespace vmoe;
using vmoe::testing::GradcheckOptions;
using Inputs = std::vector<Tensor>;

namespace {

Tensor leaf(Tensor t) {
  t.set_requires_grad(true);
  return t;
}

// N(0, 1) f64 values that require grad.
Tensor var(const Shape& shape, uint64_t seed) {
  return leaf(randn(shape, RngKey{seed, 11}, 0, DType::f64));
}

// Uniform in [lo, hi), f64, requiring grad.
Tensor uniform(const Shape& shape, uint64_t seed, double lo, double hi) {
  return leaf(rand_uniform(shape, RngKey{seed, 12}, lo, hi, 0, DType::f64));
}

// Values at least 0.1 away from 0 (for relu and divisors), f64, requiring grad.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  std::vector<double> v = randn(shape, RngKey{seed, 13}, 0, DType::f64).cpu().to_vector<double>();
  for (double& x : v)
    x = x < 0 ? x - 0.1 : x + 0.1;
  return leaf(Tensor::from_vector(v, shape));
}

// Pairwise distinct values spaced 0.05 apart in random order (for max and topk: a
// perturbation of 1e-6 never changes which element wins).
Tensor distinct(const Shape& shape, uint64_t seed) {
  const int64_t n = shape_numel(shape);
  Tensor order = argsort(randn({n}, RngKey{seed, 14}, 0, DType::f64));
  std::vector<int64_t> perm = order.cpu().to_vector<int64_t>();
  std::vector<double> v(size_t(n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    v[size_t(perm[size_t(i)])] = 0.05 * double(i) - 1.0;
  return leaf(Tensor::from_vector(v, shape));
}

Tensor constant(Tensor t) {
  return t;
}

template <class I>
Tensor index_tensor(const std::vector<I>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

}  // namespace

// ---------------------------------------------------------------- views and copies

TEST_CASE("gradcheck: reshape") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return reshape(in[0], {4, -1});
      },
      {var({2, 3, 4}, 1)});
  // Of a non-contiguous view: reshape copies first.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return reshape(transpose(in[0], 0, 1), {12}); },
                       {var({3, 4}, 2)});
  // Through the Tensor shorthand.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return in[0].reshape({2, 2, 3}); }, {var({12}, 3)});
}

TEST_CASE("gradcheck: permute") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return permute(in[0], {2, 0, 1});
      },
      {var({2, 3, 4}, 4)});
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return permute(in[0], {1, -1, 0});
      },
      {var({2, 3, 4}, 5)});
}

TEST_CASE("gradcheck: transpose") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return transpose(in[0], 0, 2); },
                       {var({2, 3, 4}, 6)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return transpose(in[0], -1, -2); },
                       {var({2, 3, 4}, 7)});
}

TEST_CASE("gradcheck: slice") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return slice(in[0], 1, 1, 3); }, {var({3, 4, 2}, 8)});
  // A slice of a slice of a transposed view; gradient zero outside the window.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return slice(slice(transpose(in[0], 0, 1), 0, 1, 4), 1, 0, 2); },
      {var({3, 5}, 9)});
  // An empty slice has a zero gradient.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return concat({slice(in[0], 0, 2, 2), in[0]}, 0);
      },
      {var({3, 2}, 10)});
}

TEST_CASE("gradcheck: expand") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return expand(in[0], {2, 3, 4});
      },
      {var({3, 1}, 11)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return expand(in[0], {3, 4}); }, {var({4}, 12)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return expand(in[0], {2, 3}); }, {var({}, 13)});
}

TEST_CASE("gradcheck: contiguous") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return contiguous(permute(in[0], {1, 2, 0}));
      },
      {var({2, 3, 4}, 14)});
  // Already contiguous: the identity.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return contiguous(in[0]); }, {var({3, 4}, 15)});
}

TEST_CASE("gradcheck: concat") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return concat({in[0], in[1], in[2]}, 1);
      },
      {var({2, 1, 3}, 16), var({2, 4, 3}, 17), var({2, 2, 3}, 18)});
  // One operand without grad; the same tensor twice; a negative axis.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return concat({in[0], in[1], in[0]}, -1);
      },
      {var({3, 2}, 19), constant(randn({3, 4}, RngKey{20, 0}, 0, DType::f64))});
}

TEST_CASE("gradcheck: split") {
  // Every part reaches the output with a different weight.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        std::vector<Tensor> p = split(in[0], {1, 3, 1}, -1);
        return concat({mul_scalar(p[2], 3.0), p[0], mul_scalar(p[1], -2.0)}, -1);
      },
      {var({2, 5}, 21)});
  // Unused parts get a zero gradient.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return split(in[0], {2, 2}, 0)[1];
      },
      {var({4, 3}, 22)});
}

TEST_CASE("gradcheck: to_dtype") {
  // f64 -> f64 is the identity.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return to_dtype(in[0], DType::f64); },
                       {var({3, 4}, 23)});
  // f64 -> f32 -> f64: the round trip rounds to f32 (rel. 6e-8), so the step and tolerance
  // are loose; the gradient must still be R itself, with the input's shape and dtype.
  GradcheckOptions loose;
  loose.eps = 1e-2;
  loose.rtol = 1e-4;
  loose.atol = 1e-6;
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return to_dtype(to_dtype(in[0], DType::f32), DType::f64); },
      {var({3, 4}, 24)}, loose);
  // An f32 leaf seen through f64: the gradient comes back as f32.
  Tensor x32 = leaf(randn({2, 3}, RngKey{25, 0}));
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return square(to_dtype(in[0], DType::f64)); }, {x32},
                       loose);
  Tensor y = sum_all(to_dtype(x32, DType::f64));
  y.backward();
  REQUIRE(x32.grad().defined());
  CHECK(x32.grad().dtype() == DType::f32);
  CHECK(x32.grad().shape() == x32.shape());
  for (float g : x32.grad().cpu().to_vector<float>())
    CHECK(g == 1.0f);
}

// ---------------------------------------------------------------- broadcasting binary ops

namespace {

struct BroadcastCase {
  Shape a, b;
};

const std::vector<BroadcastCase> kBroadcastCases = {
    {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{4}, {3, 4}},       {{3, 1}, {1, 4}},
    {{}, {3, 4}},     {{3, 4}, {}},  {{2, 3, 4}, {3, 1}}, {{1, 3, 1}, {2, 1, 4}},
};

void check_binary(Tensor (*op)(const Tensor&, const Tensor&), bool divisor_away_from_zero) {
  uint64_t seed = 100;
  for (const BroadcastCase& c : kBroadcastCases) {
    INFO("a " << shape_str(c.a) << ", b " << shape_str(c.b));
    Tensor a = var(c.a, seed++);
    Tensor b = divisor_away_from_zero ? away_from_zero(c.b, seed++) : var(c.b, seed++);
    VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(in[0], in[1]); }, {a, b});
    // Only one side requiring grad.
    VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(in[0], in[1]); },
                         {a, constant(b.detach())});
    VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(in[0], in[1]); },
                         {constant(a.detach()), b});
  }
  // A non-contiguous operand and the same tensor on both sides.
  VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(transpose(in[0], 0, 1), in[1]); },
                       {var({4, 3}, seed++), away_from_zero({3, 4}, seed++)});
  VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(in[0], in[0]); },
                       {away_from_zero({2, 3}, seed++)});
}

}  // namespace

TEST_CASE("gradcheck: add") {
  check_binary(add, false);
}
TEST_CASE("gradcheck: sub") {
  check_binary(sub, false);
}
TEST_CASE("gradcheck: mul") {
  check_binary(mul, false);
}
TEST_CASE("gradcheck: div") {
  check_binary(div, true);
}

TEST_CASE("gradcheck: add_scalar and mul_scalar") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return add_scalar(in[0], 2.5); }, {var({3, 4}, 30)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return mul_scalar(in[0], -1.75); },
                       {var({3, 4}, 31)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return mul_scalar(in[0], 0.0); }, {var({2, 2}, 32)});
}

// ---------------------------------------------------------------- unary ops

namespace {

void check_unary(Tensor (*op)(const Tensor&), const Tensor& x) {
  VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(in[0]); }, {x});
  // Of a non-contiguous view.
  VMOE_CHECK_GRADCHECK([op](const Inputs& in) { return op(transpose(in[0], 0, 1)); }, {x});
}

}  // namespace

TEST_CASE("gradcheck: neg") {
  check_unary(neg, var({3, 5}, 40));
}
TEST_CASE("gradcheck: exp") {
  check_unary(exp, var({3, 5}, 41));
}
TEST_CASE("gradcheck: log") {
  check_unary(log, uniform({3, 5}, 42, 0.2, 3.0));
}
TEST_CASE("gradcheck: tanh") {
  check_unary(tanh, var({3, 5}, 43));
}
TEST_CASE("gradcheck: sigmoid") {
  check_unary(sigmoid, mul_scalar(var({3, 5}, 44), 3.0));
}
TEST_CASE("gradcheck: relu") {
  check_unary(relu, away_from_zero({3, 5}, 45));
}
TEST_CASE("gradcheck: sqrt") {
  check_unary(sqrt, uniform({3, 5}, 46, 0.2, 3.0));
}
TEST_CASE("gradcheck: square") {
  check_unary(square, var({3, 5}, 47));
}
TEST_CASE("gradcheck: gelu") {
  check_unary(gelu, mul_scalar(var({3, 5}, 48), 2.0));
}
TEST_CASE("gradcheck: normal_cdf") {
  check_unary(normal_cdf, mul_scalar(var({3, 5}, 49), 2.0));
}

// ---------------------------------------------------------------- reductions

TEST_CASE("gradcheck: sum") {
  const std::vector<std::vector<int64_t>> axis_sets = {{0},    {1},    {2},    {-1}, {0, 1},
                                                       {1, 2}, {0, 2}, {2, 0}, {},   {0, 1, 2}};
  uint64_t seed = 50;
  for (const auto& axes : axis_sets) {
    for (KeepDim keep : {KeepDim::no, KeepDim::yes}) {
      INFO("axes " << shape_str(axes) << " keepdim " << (keep == KeepDim::yes));
      VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return sum(in[0], axes, keep); },
                           {var({2, 3, 4}, seed++)});
    }
  }
  // Of a permuted view (the reduction sees a contiguous copy).
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return sum(permute(in[0], {2, 0, 1}), {0, 2});
      },
      {var({2, 3, 4}, seed++)});
}

TEST_CASE("gradcheck: mean") {
  uint64_t seed = 80;
  for (const std::vector<int64_t>& axes : std::vector<std::vector<int64_t>>{{1}, {0, 2}, {-1}}) {
    for (KeepDim keep : {KeepDim::no, KeepDim::yes}) {
      INFO("axes " << shape_str(axes) << " keepdim " << (keep == KeepDim::yes));
      VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return mean(in[0], axes, keep); },
                           {var({2, 3, 4}, seed++)});
    }
  }
}

TEST_CASE("gradcheck: max") {
  uint64_t seed = 90;
  for (int64_t axis : {0, 1, 2, -1}) {
    for (KeepDim keep : {KeepDim::no, KeepDim::yes}) {
      INFO("axis " << axis << " keepdim " << (keep == KeepDim::yes));
      VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return max(in[0], axis, keep); },
                           {distinct({2, 3, 4}, seed++)});
    }
  }
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return max(in[0], 0); }, {distinct({5}, seed++)});
}

TEST_CASE("gradcheck: sum_all and mean_all") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return sum_all(in[0]); }, {var({2, 3, 4}, 120)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return mean_all(in[0]); }, {var({2, 3, 4}, 121)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return sum_all(transpose(in[0], 0, 1)); },
                       {var({3, 4}, 122)});
}

TEST_CASE("gradcheck: sum_to") {
  uint64_t seed = 130;
  for (const Shape& to : std::vector<Shape>{{2, 3, 4}, {3, 1}, {4}, {1, 4}, {}, {2, 1, 4}}) {
    INFO("to " << shape_str(to));
    VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return sum_to(in[0], to); },
                         {var({2, 3, 4}, seed++)});
  }
}

TEST_CASE("gradcheck: cumsum") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return cumsum(in[0], 0); }, {var({4, 5}, 140)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return cumsum(in[0], 1); }, {var({4, 5}, 141)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return cumsum(in[0], 1); }, {var({2, 3, 4}, 142)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return cumsum(transpose(in[0], 0, 1), -1); },
                       {var({4, 3}, 143)});
}

// ---------------------------------------------------------------- matrix products

TEST_CASE("gradcheck: matmul 2-D, all transposes") {
  const int64_t m = 3, k = 4, n = 5;
  uint64_t seed = 150;
  for (Trans ta : {Trans::no, Trans::yes}) {
    for (Trans tb : {Trans::no, Trans::yes}) {
      INFO("ta " << (ta == Trans::yes) << " tb " << (tb == Trans::yes));
      Tensor a = var(ta == Trans::yes ? Shape{k, m} : Shape{m, k}, seed++);
      Tensor b = var(tb == Trans::yes ? Shape{n, k} : Shape{k, n}, seed++);
      VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
    }
  }
  // Non-contiguous operands.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return matmul(transpose(in[0], 0, 1), slice(in[1], 1, 1, 4)); },
      {var({4, 3}, seed++), var({4, 5}, seed++)});
}

TEST_CASE("gradcheck: matmul batched 3-D with transposes") {
  const int64_t batch = 2, m = 3, k = 4, n = 2;
  uint64_t seed = 170;
  for (Trans ta : {Trans::no, Trans::yes}) {
    for (Trans tb : {Trans::no, Trans::yes}) {
      INFO("ta " << (ta == Trans::yes) << " tb " << (tb == Trans::yes));
      Tensor a = var(ta == Trans::yes ? Shape{batch, k, m} : Shape{batch, m, k}, seed++);
      Tensor b = var(tb == Trans::yes ? Shape{batch, n, k} : Shape{batch, k, n}, seed++);
      VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return matmul(in[0], in[1], ta, tb); }, {a, b});
    }
  }
}

TEST_CASE("gradcheck: matmul [..., M, K] x [K, N]") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1]); },
                       {var({2, 3, 4}, 190), var({4, 5}, 191)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return matmul(in[0], in[1], Trans::no, Trans::yes); },
                       {var({2, 2, 3, 4}, 192), var({5, 4}, 193)});
}

TEST_CASE("gradcheck: linear") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0], in[1], in[2]); },
                       {var({2, 3, 4}, 200), var({4, 5}, 201), var({5}, 202)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return linear(in[0], in[1], Tensor()); },
                       {var({3, 4}, 203), var({4, 2}, 204)});
  // Only the kernel and bias require grad (the input of a first layer).
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return linear(in[0], in[1], in[2]); },
      {constant(randn({3, 4}, RngKey{205, 0}, 0, DType::f64)), var({4, 5}, 206), var({5}, 207)});
  // Non-contiguous input and kernel.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        return linear(transpose(in[0], 0, 1), transpose(in[1], 0, 1), in[2]);
      },
      {var({4, 3}, 208), var({5, 4}, 209), var({5}, 210)});
}

TEST_CASE("gradcheck: stacked_linear") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return stacked_linear(in[0], in[1], in[2]); },
                       {var({3, 4, 5}, 211), var({3, 5, 2}, 212), var({3, 2}, 213)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return stacked_linear(in[0], in[1], Tensor()); },
                       {var({2, 3, 4}, 214), var({2, 4, 6}, 215)});
  // Non-contiguous input.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return stacked_linear(transpose(in[0], 1, 2), in[1], in[2]); },
      {var({2, 4, 3}, 216), var({2, 4, 5}, 217), var({2, 5}, 218)});
}

// ---------------------------------------------------------------- nn ops

TEST_CASE("gradcheck: softmax") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return softmax(in[0]); }, {var({3, 5}, 220)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return softmax(mul_scalar(in[0], 3.0)); },
                       {var({2, 3, 4}, 221)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return softmax(transpose(in[0], 0, 1)); },
                       {var({4, 3}, 222)});
}

TEST_CASE("gradcheck: log_softmax") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return log_softmax(in[0]); }, {var({3, 5}, 230)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return log_softmax(mul_scalar(in[0], 3.0)); },
                       {var({2, 3, 4}, 231)});
}

TEST_CASE("gradcheck: layer_norm") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], in[1], in[2], 1e-5); },
                       {mul_scalar(var({2, 3, 6}, 240), 2.0), var({6}, 241), var({6}, 242)});
  // Large eps (the eps path matters) and a non-contiguous x.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return layer_norm(transpose(in[0], 0, 1), in[1], in[2], 0.5); },
      {var({5, 3}, 243), var({5}, 244), var({5}, 245)});
  // x only.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return layer_norm(in[0], in[1], in[2], 1e-6); },
                       {var({4, 5}, 246), constant(Tensor::full({5}, 1.0, DType::f64)),
                        constant(Tensor::zeros({5}, DType::f64))});
}

TEST_CASE("gradcheck: softmax_cross_entropy") {
  Tensor labels = index_tensor<int32_t>({0, 4, 2, 2}, {4});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return softmax_cross_entropy(in[0], in[1]); },
                       {mul_scalar(var({4, 5}, 250), 2.0), constant(labels)});
  // Of a non-contiguous view.
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return softmax_cross_entropy(transpose(in[0], 0, 1), in[1]); },
      {var({5, 4}, 251), constant(labels)});
}

TEST_CASE("gradcheck: sigmoid_cross_entropy") {
  Tensor labels = index_tensor<int32_t>({1, 0, 3}, {3});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return sigmoid_cross_entropy(in[0], in[1]); },
                       {mul_scalar(var({3, 4}, 260), 3.0), constant(labels)});
}

TEST_CASE("gradcheck: dropout") {
  const RngKey key{77, 3};
  const double rate = 0.3;
  VMOE_CHECK_GRADCHECK([&](const Inputs& in) { return dropout(in[0], rate, key, 5); },
                       {var({4, 6}, 270)});
  // The gradient of sum(dropout(x)) is the mask itself: 0 or 1 / (1 - rate).
  Tensor x = var({4, 6}, 271);
  sum_all(dropout(x, rate, key, 5)).backward();
  Tensor mask;
  {
    NoGrad no_grad;
    mask = dropout(Tensor::full({4, 6}, 1.0, DType::f64), rate, key, 5);
  }
  const std::vector<double> g = x.grad().cpu().to_vector<double>();
  const std::vector<double> m = mask.cpu().to_vector<double>();
  int64_t dropped = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    CHECK(g[i] == m[i]);
    CHECK((m[i] == 0.0 || std::abs(m[i] - 1.0 / (1.0 - rate)) < 1e-15));
    dropped += m[i] == 0.0;
  }
  CHECK(dropped > 0);
  CHECK(dropped < int64_t(g.size()));
}

TEST_CASE("gradcheck: image_to_patches") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return image_to_patches(in[0], 2); },
                       {var({2, 4, 6, 3}, 280)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return image_to_patches(in[0], 3); },
                       {var({1, 3, 6, 2}, 281)});
}

// ---------------------------------------------------------------- indexing

TEST_CASE("gradcheck: index_select") {
  // Row 4 twice (its gradient is the sum), -1 gives a zero row, rows 2 and 3 unused.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return index_select(in[0], in[1]); },
                       {var({5, 3}, 290), constant(index_tensor<int64_t>({4, -1, 1, 4, 0}, {5}))});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return index_select(in[0], in[1]); },
                       {var({4, 2, 3}, 291), constant(index_tensor<int32_t>({3, 3, -1, 0}, {4}))});
}

TEST_CASE("gradcheck: index_add") {
  // Three rows into row 2, one skipped (-1); rows 1 and 3 receive nothing.
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return index_add(4, in[1], in[0]); },
                       {var({5, 3}, 300), constant(index_tensor<int64_t>({2, -1, 0, 2, 2}, {5}))});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return index_add(3, in[1], in[0]); },
                       {var({4, 2, 2}, 301), constant(index_tensor<int32_t>({1, 1, -1, 0}, {4}))});
}

TEST_CASE("gradcheck: gather") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return gather(in[0], in[1]); },
                       {var({3, 5}, 310), constant(index_tensor<int64_t>(
                                              {0, 0, 4, 1, 2, 2, 2, 3, 4, 3, 1, 0}, {3, 4}))});
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) { return gather(in[0], in[1]); },
      {var({2, 2, 3}, 311), constant(index_tensor<int32_t>({2, 2, 0, 1}, {2, 2, 1}))});
}

TEST_CASE("gradcheck: topk values") {
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return topk(in[0], 3).values; },
                       {distinct({3, 6}, 320)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return topk(in[0], 4).values; },
                       {distinct({2, 4}, 321)});
  VMOE_CHECK_GRADCHECK([](const Inputs& in) { return topk(in[0], 1).values; },
                       {distinct({2, 2, 5}, 322)});
}

// ---------------------------------------------------------------- compositions

TEST_CASE("gradcheck: operator shorthands") {
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        const Tensor &a = in[0], &b = in[1];
        return (a + b) * a - b / (b * b + 1.0) + 2.0 * a - a / 4.0 - (-b) * 0.5 - 3.0;
      },
      {var({3, 4}, 330), var({4}, 331)});
}

TEST_CASE("gradcheck: composite pre-LN MLP block with cross-entropy") {
  // x -> LN -> linear -> gelu -> linear (+ residual) -> mean over tokens -> xent.
  Tensor labels = index_tensor<int32_t>({1, 2}, {2});
  VMOE_CHECK_GRADCHECK(
      [](const Inputs& in) {
        const Tensor& x = in[0];
        Tensor h = layer_norm(x, in[1], in[2], 1e-6);
        h = gelu(linear(h, in[3], in[4]));
        Tensor y = x + linear(h, in[5], Tensor());
        return softmax_cross_entropy(mean(y, {1}), in[6]);
      },
      {var({2, 3, 4}, 340), var({4}, 341), var({4}, 342), var({4, 6}, 343), var({6}, 344),
       var({6, 4}, 345), constant(labels)});
}

// ---------------------------------------------------------------- the checker itself

TEST_CASE("gradcheck: the checker rejects wrong gradients") {
  // d(x * stop_gradient(x))/dx is x for autograd but 2x numerically: must fail.
  const auto wrong = vmoe::testing::gradcheck(
      [](const Inputs& in) { return mul(in[0], in[0].detach()); }, {var({2, 3}, 350)});
  CHECK_FALSE(wrong.ok);
  CHECK(wrong.failed == 6);
  CHECK(wrong.checked == 6);
  CHECK_THAT(wrong.message, Catch::Contains("analytic") && Catch::Contains("numeric") &&
                                Catch::Contains("input 0 [2, 3] f64 element"));
  // No gradient at all reaches the input.
  const auto none = vmoe::testing::gradcheck(
      [](const Inputs& in) { return mul_scalar(in[0].detach(), 2.0); }, {var({3}, 351)});
  CHECK_FALSE(none.ok);
  CHECK_THAT(none.message, Catch::Contains("no gradient reached this input"));
  // A correct gradient passes, and every element was compared.
  const auto right = vmoe::testing::gradcheck([](const Inputs& in) { return mul(in[0], in[0]); },
                                              {var({2, 3}, 352)});
  CHECK(right.ok);
  CHECK(right.checked == 6);
  CHECK(right.worst_ratio < 1.0);
  // NaN (sqrt probed at 0 from both sides) is a failure.
  const auto nan = vmoe::testing::gradcheck([](const Inputs& in) { return sqrt(in[0]); },
                                            {leaf(Tensor::zeros({2}, DType::f64))});
  CHECK_FALSE(nan.ok);
  CHECK(nan.failed == 2);
  // A forward that changes when recording is off is caught before any differencing.
  const auto moody = vmoe::testing::gradcheck(
      [](const Inputs& in) { return mul_scalar(in[0], grad_enabled() ? 2.0 : 3.0); },
      {var({2}, 353)});
  CHECK_FALSE(moody.ok);
  CHECK_THAT(moody.message, Catch::Contains("forward differs with and without recording"));
  // Nothing to check is a failure, not a silent pass.
  CHECK_FALSE(vmoe::testing::gradcheck([](const Inputs& in) { return in[0]; },
                                       {constant(Tensor::zeros({2}, DType::f64))})
                  .ok);
}
