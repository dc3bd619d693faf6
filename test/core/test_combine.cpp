// The fused MoE combine (core/ops_combine.cpp) against the gather, product and sum it
// replaces: values and both gradients, dropped choices, a row used twice, finite-difference
// gradients in f64, the composed path under bf16 activations, and argument errors.
#include <catch2/catch.hpp>

#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "test/core/device_testing.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

std::vector<double> values(const Tensor& t) {
  NoGrad no_grad;
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

struct Run {
  std::vector<double> out, gy, gw;
};

// out and the gradients of sum(out * r), by the op or by the composed ops.
Run run(const Tensor& y0, const Tensor& w0, const Tensor& rows, bool fused) {
  Tensor y = y0.detach(), w = w0.detach();
  y.set_requires_grad(true);
  w.set_requires_grad(true);
  const int64_t n = w.size(0), k = w.size(1), d = y.size(1);
  Tensor out = fused ? combine(y, w, rows)
                     : sum((index_select(y, rows) * w.reshape({n * k, 1})).reshape({n, k, d}), {1});
  const Tensor r = randn(out.shape(), RngKey{5, 9}, 0, out.dtype());
  sum_all(out * r).backward();
  return {values(out), values(y.grad()), values(w.grad())};
}

void check_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i] == Approx(b[i]).margin(tol));
  }
}

}  // namespace

TEST_CASE("combine: equals gather, product and sum, values and gradients") {
  // Rows as routing makes them (each used once, some dropped) and one used by two choices.
  struct Case {
    int64_t rows, n, k;
    std::vector<int64_t> index;
  };
  const Case cases[] = {
      {6, 3, 2, {0, 4, -1, 2, 5, 1}},
      {5, 4, 1, {3, -1, 0, 4}},
      {7, 2, 3, {6, 0, 2, -1, -1, 5}},
      {4, 2, 2, {1, 3, 1, 0}},  // row 1 twice: its gradient is the sum of both uses
      {3, 0, 2, {}},
  };
  for (const DType dtype : {DType::f64, DType::f32}) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype), c.rows, c.n, c.k);
      const Tensor y = randn({c.rows, 9}, RngKey{3, 1}, 0, dtype);
      const Tensor w = randn({c.n, c.k}, RngKey{3, 2}, 0, dtype);
      const Tensor rows = Tensor::from_vector(c.index, {c.n * c.k}, default_device());
      const Run fused = run(y, w, rows, true), composed = run(y, w, rows, false);
      const double tol = dtype == DType::f64 ? 1e-13 : 1e-5;
      check_close(fused.out, composed.out, tol);
      check_close(fused.gy, composed.gy, tol);
      check_close(fused.gw, composed.gw, tol);
    }
  }
}

TEST_CASE("combine: finite-difference gradients in f64") {
  const Tensor y = randn({6, 5}, RngKey{4, 1}, 0, DType::f64);
  const Tensor w = randn({3, 2}, RngKey{4, 2}, 0, DType::f64);
  const Tensor rows =
      Tensor::from_vector(std::vector<int64_t>{5, 0, -1, 3, 2, 2}, {6}, default_device());
  Tensor yl = y.detach(), wl = w.detach();
  yl.set_requires_grad(true);
  wl.set_requires_grad(true);
  VMOE_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return combine(in[0], in[1], rows); },
                       {yl, wl});
}

TEST_CASE("combine: bf16 expert outputs with f32 weights sum in f32 (the composed path)") {
  const Tensor y = randn({6, 8}, RngKey{6, 1});
  const Tensor w = randn({3, 2}, RngKey{6, 2});
  const Tensor rows =
      Tensor::from_vector(std::vector<int64_t>{1, 4, 0, -1, 5, 2}, {6}, default_device());
  const Tensor y16 = to_dtype(y, DType::bf16);
  const Tensor out = combine(y16, w, rows);
  CHECK(out.dtype() == DType::bf16);
  check_close(values(out), values(combine(to_dtype(y16, DType::f32), w, rows)), 0.05);
}

TEST_CASE("combine: argument errors and rows out of range") {
  const Tensor y = Tensor::zeros({4, 3});
  const Tensor w = Tensor::zeros({2, 2});
  CHECK_THROWS_WITH(combine(y, w, Tensor::zeros({4}, DType::i32)),
                    Catch::Contains("combine: rows [4] i32 must be i64 [N * k]"));
  CHECK_THROWS_WITH(combine(y, w, Tensor::zeros({3}, DType::i64)),
                    Catch::Contains("must be i64 [N * k]"));
  CHECK_THROWS_WITH(combine(Tensor::zeros({4}), w, Tensor::zeros({4}, DType::i64)),
                    Catch::Contains("combine"));
  const Tensor rows = Tensor::from_vector(std::vector<int64_t>{0, 1, 4, 2}, {4}, default_device());
  CHECK_KERNEL_ERROR(combine(y, w, rows), "combine: row 4 at position 2 is outside [-1, 4)");
}

TEST_CASE("dispatch: backward through the combine rows equals index_select's scatter") {
  // Slots as the MoE layer assigns them: 3 groups of 7 tokens (the last one of 4), k 2 of 4
  // experts, a capacity that drops some choices.
  const int64_t n = 18, k = 2, e = 4, d = 6;
  std::vector<int64_t> chosen;
  for (int64_t i = 0; i < n; ++i) {
    chosen.push_back((i * 3) % e);
    chosen.push_back((i * 3 + 1 + i % 2) % e);
  }
  const SlotLayout layout = [&] {
    SlotLayout l;
    l.tokens = n;
    l.k = k;
    l.experts = e;
    l.group_size = 7;
    l.capacity = 3;
    l.last_capacity = 2;
    l.rows_per_expert = 2 * 3 + 2;
    return l;
  }();
  const SlotAssignment slots =
      assign_slots(Tensor::from_vector(chosen, {n, k}, default_device()), Tensor(), layout);
  for (const DType dtype : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dtype));
    const Tensor x0 = randn({n, d}, RngKey{8, 1}, 0, dtype);
    const Tensor r = randn({e * layout.rows_per_expert, d}, RngKey{8, 2}, 0, dtype);
    auto grad_of = [&](bool through_combine_rows) {
      Tensor x = x0.detach();
      x.set_requires_grad(true);
      const Tensor out = through_combine_rows ? dispatch(x, slots.dispatch_rows, slots.combine_rows)
                                              : index_select(x, slots.dispatch_rows);
      sum_all(out * r).backward();
      return std::make_pair(values(out), values(x.grad()));
    };
    const auto [out, gx] = grad_of(true);
    const auto [out_ref, gx_ref] = grad_of(false);
    CHECK(out == out_ref);
    check_close(gx, gx_ref, dtype == DType::f64 ? 1e-14 : 1e-6);
  }
  CHECK_THROWS_WITH(
      dispatch(Tensor::zeros({4, 2}), slots.dispatch_rows, Tensor::zeros({7}, DType::i64)),
      Catch::Contains("dispatch: combine_rows [7] i64 must be i64 [N * k]"));
}
