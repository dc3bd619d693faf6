// The autograd tape (core/autograd.h): accumulation into .grad, fan-out, NoGrad, seeds,
// in-place accumulation into pre-set gradient views (flat parameter buffers), detach.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "core/autograd.h"
#include "core/ops.h"

using namespace vmoe;

namespace {

Tensor leaf(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::from_vector(v, shape);
  t.set_requires_grad(true);
  return t;
}

std::vector<double> grad_of(const Tensor& t) {
  REQUIRE(t.grad().defined());
  return t.grad().cpu().to_vector<double>();
}

}  // namespace

TEST_CASE("autograd: gradients accumulate over two backward calls") {
  Tensor x = leaf({1, -2, 3}, {3});
  sum_all(mul_scalar(x, 3.0)).backward();
  CHECK(grad_of(x) == std::vector<double>{3, 3, 3});
  // A second graph over the same leaf adds to .grad instead of replacing it.
  sum_all(square(x)).backward();
  CHECK(grad_of(x) == std::vector<double>{3 + 2, 3 - 4, 3 + 6});
  // Clearing .grad starts over.
  x.set_grad(Tensor());
  sum_all(x).backward();
  CHECK(grad_of(x) == std::vector<double>{1, 1, 1});
}

TEST_CASE("autograd: a tensor used twice gets the summed gradient") {
  Tensor x = leaf({1, -2, 3}, {3});
  sum_all(mul(x, x)).backward();
  CHECK(grad_of(x) == std::vector<double>{2, -4, 6});

  // An intermediate used three times: y = a * a + a with a = 2 x, so dy/dx = 2 (2 a + 1).
  Tensor z = leaf({0.5, 1, -1}, {3});
  Tensor a = mul_scalar(z, 2.0);
  sum_all(add(mul(a, a), a)).backward();
  CHECK(grad_of(z) == std::vector<double>{2 * (2 * 1 + 1), 2 * (2 * 2 + 1), 2 * (2 * -2 + 1)});

  // Both operands of concat are the same leaf.
  Tensor w = leaf({1, 2}, {2});
  sum_all(mul(concat({w, w}, 0), Tensor::from_vector<double>({1, 10, 100, 1000}, {4}))).backward();
  CHECK(grad_of(w) == std::vector<double>{101, 1010});
}

TEST_CASE("autograd: summing into a pending gradient never changes one shared with another node") {
  // add's backward hands one gradient tensor to both of its inputs, a and b; the product a * b
  // then sends each a second gradient, which is summed into the pending ones. Summing into a's
  // in place would change b's too. Both operand orders, so that add is reached first in one.
  for (bool product_first : {false, true}) {
    CAPTURE(product_first);
    Tensor z = leaf({1, 2, 3}, {3});
    Tensor a = mul_scalar(z, 2.0), b = mul_scalar(z, 3.0);
    // The products with ones make the incoming gradients plain contiguous tensors (sum_all's
    // is a broadcast view, which is never summed into in place).
    Tensor ones = Tensor::from_vector<double>({1, 1, 1}, {3});
    Tensor via_add = sum_all(mul(add(a, b), ones)), via_mul = sum_all(mul(mul(a, b), ones));
    (product_first ? add(via_mul, via_add) : add(via_add, via_mul)).backward();
    // d/dz of sum(2z + 3z) + sum(2z * 3z) = 5 + 12 z
    CHECK(grad_of(z) == std::vector<double>{5 + 12, 5 + 24, 5 + 36});
  }
  // A node fed by three consumers (two sums into its pending gradient).
  Tensor x = leaf({1, -1}, {2});
  Tensor y = mul_scalar(x, 2.0);
  sum_all(add(add(y, mul(y, y)), mul_scalar(y, 3.0))).backward();
  // d/dx = 2 (1 + 2 y + 3) with y = 2 x
  CHECK(grad_of(x) == std::vector<double>{2 * (4 + 4), 2 * (4 - 4)});
}

TEST_CASE("autograd: gradients reach only tensors that require grad") {
  Tensor x = leaf({1, 2}, {2});
  Tensor c = Tensor::from_vector<double>({5, 7}, {2});
  Tensor y = sum_all(mul(x, c));
  CHECK(y.requires_grad());
  y.backward();
  CHECK(grad_of(x) == std::vector<double>{5, 7});
  CHECK_FALSE(c.grad().defined());
  CHECK_FALSE(c.requires_grad());
  // An op over tensors without grad records nothing.
  Tensor d = mul(c, c);
  CHECK_FALSE(d.requires_grad());
  CHECK(d.grad_fn() == nullptr);
}

TEST_CASE("autograd: NoGrad disables recording") {
  Tensor x = leaf({1, 2}, {2});
  CHECK(grad_enabled());
  Tensor y;
  {
    NoGrad no_grad;
    CHECK_FALSE(grad_enabled());
    y = mul_scalar(x, 2.0);
    {
      NoGrad nested;
      CHECK_FALSE(grad_enabled());
    }
    CHECK_FALSE(grad_enabled());  // the inner guard restores "off", not "on"
  }
  CHECK(grad_enabled());
  CHECK_FALSE(y.requires_grad());
  CHECK(y.grad_fn() == nullptr);
  CHECK(y.cpu().to_vector<double>() == std::vector<double>{2, 4});
  CHECK_THROWS_AS(sum_all(y).backward(), std::invalid_argument);
  CHECK_FALSE(x.grad().defined());
  // Recording resumes after the guard.
  Tensor z = mul_scalar(x, 2.0);
  CHECK(z.requires_grad());
  CHECK(z.grad_fn() != nullptr);
}

TEST_CASE("autograd: backward seeds") {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = mul_scalar(x, 2.0);
  // A non-scalar root needs a seed.
  CHECK_THROWS_AS(y.backward(), std::invalid_argument);
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("needs a scalar, got [3] f64"));
  CHECK_THROWS_WITH(y.backward(Tensor::zeros({2}, DType::f64)),
                    Catch::Contains("seed [2] f64 does not match [3] f64"));
  // With a seed: vector-Jacobian product 2 * seed.
  y.backward(Tensor::from_vector<double>({1, 10, 100}, {3}));
  CHECK(grad_of(x) == std::vector<double>{2, 20, 200});
  // backward on a leaf adds the seed itself.
  Tensor l = leaf({4, 5}, {2});
  l.backward(Tensor::from_vector<double>({1, -1}, {2}));
  CHECK(grad_of(l) == std::vector<double>{1, -1});
  // A one-element non-scalar root is allowed without a seed.
  Tensor one = leaf({3}, {1, 1});
  square(one).backward();
  CHECK(grad_of(one) == std::vector<double>{6});
}

TEST_CASE("autograd: a pre-set grad view is accumulated in place") {
  // Flat parameter gradients: leaves get views into one buffer before backward runs.
  Tensor flat = Tensor::zeros({10}, DType::f64);
  Tensor w = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = leaf({-1, -2}, {2});
  Tensor gw = reshape(slice(flat, 0, 2, 8), {2, 3});
  Tensor gb = slice(flat, 0, 8, 10);
  w.set_grad(gw);
  b.set_grad(gb);
  Tensor x = Tensor::from_vector<double>({1, 10, 100}, {3});
  // loss = sum_i (w x)_i * (i + 1) + sum(b * b)
  Tensor wx = sum(mul(w, x), {1});
  Tensor loss = add(sum_all(mul(wx, Tensor::from_vector<double>({1, 2}, {2}))), sum_all(mul(b, b)));
  loss.backward();
  // dL/dw[i, j] = (i + 1) x[j]; dL/db = 2 b.
  const std::vector<double> expect_w = {1, 10, 100, 2, 20, 200}, expect_b = {-2, -4};
  auto fv = flat.cpu().to_vector<double>();
  CHECK(fv[0] == 0);
  CHECK(fv[1] == 0);
  for (size_t i = 0; i < 6; ++i)
    CHECK(fv[2 + i] == expect_w[i]);
  CHECK(fv[8] == expect_b[0]);
  CHECK(fv[9] == expect_b[1]);
  // The leaves' .grad are still the views, not fresh tensors.
  CHECK(w.grad().storage() == flat.storage());
  CHECK(b.grad().storage() == flat.storage());
  CHECK(w.grad().offset() == 2);
  // A second backward accumulates into the same buffer.
  sum_all(w).backward();
  fv = flat.cpu().to_vector<double>();
  for (size_t i = 0; i < 6; ++i)
    CHECK(fv[2 + i] == expect_w[i] + 1);
  CHECK(fv[8] == expect_b[0]);
  // Zeroing the buffer zeroes every gradient at once.
  fill_(flat, 0.0);
  CHECK(w.grad().cpu().to_vector<double>() == std::vector<double>(6, 0.0));
}

TEST_CASE("autograd: a pre-set f32 grad buffer behind a dtype cast") {
  Tensor w32 = Tensor::from_vector<float>({1, 2}, {2});
  w32.set_requires_grad(true);
  Tensor buf = Tensor::zeros({2}, DType::f32);
  w32.set_grad(buf);
  sum_all(square(to_dtype(w32, DType::f64))).backward();
  CHECK(buf.cpu().to_vector<float>() == std::vector<float>{2, 4});
}

TEST_CASE("autograd: detach cuts history") {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor d = mul_scalar(x, 2.0).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.grad_fn() == nullptr);
  // y = sum(d * x): the gradient treats d as a constant, so dy/dx = d = 2 x (not 4 x).
  sum_all(mul(d, x)).backward();
  CHECK(grad_of(x) == std::vector<double>{2, 4, 6});
  // detach shares storage: writes show through.
  Tensor v = x.detach();
  CHECK(v.storage() == x.storage());
  fill_(v, 0.0);
  CHECK(x.cpu().to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("autograd: a long chain runs without recursion limits") {
  Tensor x = leaf({1.5}, {});
  Tensor y = x;
  const int n = 20000;
  for (int i = 0; i < n; ++i)
    y = add_scalar(y, 1.0);
  y.backward();
  CHECK(grad_of(x) == std::vector<double>{1});
  CHECK(y.cpu().item() == 1.5 + n);
}

TEST_CASE("autograd: gradient dtypes and shapes match the inputs") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  a.set_requires_grad(true);
  Tensor b = Tensor::from_vector<float>({1, 2, 3}, {3});
  b.set_requires_grad(true);
  sum_all(mul(a, b)).backward();
  CHECK(a.grad().shape() == a.shape());
  CHECK(a.grad().dtype() == DType::f32);
  CHECK(b.grad().shape() == Shape{3});
  // db = sum over rows of a.
  CHECK(b.grad().cpu().to_vector<float>() == std::vector<float>{5, 7, 9});
  CHECK(a.grad().cpu().to_vector<float>() == std::vector<float>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("autograd: the leaf hook reports each leaf once, when its gradient is final") {
  Tensor a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2}), unused = leaf({5}, {1});
  Tensor c = leaf({7}, {1});  // requires grad but the path to it carries no gradient
  std::vector<std::pair<const void*, std::vector<double>>> reported;
  {
    LeafGradReadyHook hook([&](const Tensor& t) {
      reported.push_back({t.impl().get(), t.grad().defined() ? t.grad().cpu().to_vector<double>()
                                                             : std::vector<double>{}});
    });
    // a is used three times (its gradient is final only after the last use), b once.
    Tensor y = sum_all(a * b) + sum_all(a * a) + sum_all(exp(a)) + sum_all(c.detach() * 0.0);
    y.backward();
  }
  REQUIRE(reported.size() == 2);
  std::map<const void*, std::vector<double>> by_leaf(reported.begin(), reported.end());
  REQUIRE(by_leaf.count(a.impl().get()) == 1);
  REQUIRE(by_leaf.count(b.impl().get()) == 1);
  CHECK(by_leaf[a.impl().get()] == grad_of(a));  // the value at report time is the final one
  CHECK(by_leaf[b.impl().get()] == grad_of(b));
  CHECK(grad_of(a)[1] == Approx(4 + 2 * 2 + std::exp(2.0)));  // b + 2a + exp(a)
  CHECK(by_leaf.count(unused.impl().get()) == 0);
  // Without a hook installed nothing is reported; nested backward calls never report.
  reported.clear();
  sum_all(a * 2.0).backward();
  CHECK(reported.empty());
}
