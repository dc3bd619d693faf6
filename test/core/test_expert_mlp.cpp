// The experts' MLP on occupied rows (core/ops_expert_mlp.cpp): the fused CPU kernels against
// the composed ops they replace (matmul, bias_gelu, stacked_linear), bit for bit in f32 on the
// rows that hold tokens; padding rows out of every value and gradient, whatever they hold;
// finite-difference gradients in f64; argument errors.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "test/core/cuda_host_grid.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

std::vector<double> values(const Tensor& t) {
  NoGrad no_grad;
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

// The occupancy routing makes: each expert's R rows in groups of `capacity`, the first rows of
// each group filled (a token index), the rest padding (-1); fills drawn from the seed, with an
// empty group and a full one among them where there are enough.
std::vector<int64_t> occupancy(int64_t experts, int64_t rows, int64_t capacity, uint64_t seed) {
  std::vector<int64_t> occ(size_t(experts * rows), -1);
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  int64_t token = 0, group = 0;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t g0 = 0; g0 < rows; g0 += capacity, ++group) {
      const int64_t size = std::min(capacity, rows - g0);
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      int64_t fill = int64_t((state >> 33) % uint64_t(size + 1));
      if (group == 1) fill = 0;
      if (group == 2) fill = size;
      for (int64_t i = 0; i < fill; ++i)
        occ[size_t(e * rows + g0 + i)] = token++;
    }
  return occ;
}

struct Inputs {
  Tensor x, occupied, keep, w1, b1, w2, b2, gy;
};

// x and gy zero on padding rows (as dispatch and combine leave them) unless `dirty`.
Inputs make_inputs(int64_t e, int64_t r, int64_t d, int64_t m, int64_t capacity, DType dt,
                   bool dirty, uint64_t seed) {
  const std::vector<int64_t> occ = occupancy(e, r, capacity, seed);
  std::vector<double> keep(occ.size());
  for (size_t i = 0; i < occ.size(); ++i)
    keep[i] = occ[i] >= 0 ? 1.0 : 0.0;
  Inputs in;
  in.occupied = Tensor::from_vector(occ, {e * r});
  in.keep = to_dtype(Tensor::from_vector(keep, {e, r, 1}), dt);
  auto draw = [&](const Shape& s, uint64_t stream, double scale) {
    return mul_scalar(randn(s, RngKey{seed, stream}, 0, dt), scale);
  };
  in.x = draw({e, r, d}, 1, 1.0);
  in.gy = draw({e, r, d}, 2, 1.0);
  if (!dirty) {
    in.x = in.x * in.keep;
    in.gy = in.gy * in.keep;
  }
  in.w1 = draw({e, d, m}, 3, 0.3);
  in.b1 = draw({e, m}, 4, 0.5);
  in.w2 = draw({e, m, d}, 5, 0.3);
  in.b2 = draw({e, d}, 6, 0.5);
  return in;
}

struct Run {
  std::vector<double> y, gx, gw1, gb1, gw2, gb2;
};

// The fused op, or the composed ops with the padding rows masked out of the value.
Run run(const Inputs& in, bool fused) {
  std::vector<Tensor> leaves;
  for (const Tensor* t : {&in.x, &in.w1, &in.b1, &in.w2, &in.b2}) {
    Tensor l = t->detach().clone();
    l.set_requires_grad(true);
    leaves.push_back(l);
  }
  const Tensor &x = leaves[0], &w1 = leaves[1], &b1 = leaves[2], &w2 = leaves[3], &b2 = leaves[4];
  Tensor y = fused ? expert_mlp(x, in.occupied, w1, b1, w2, b2)
                   : stacked_linear(bias_gelu(matmul(x, w1), b1), w2, b2) * in.keep;
  y.backward(in.gy);
  // Padding rows of gx are not part of the contract's comparison: keep the occupied ones.
  return {values(y),         values(x.grad() * in.keep), values(w1.grad()),
          values(b1.grad()), values(w2.grad()),          values(b2.grad())};
}

struct Case {
  int64_t e, r, d, m, capacity;
};
// Tiny experts; a row count over one bias-gradient chunk (256 rows) and over 512 (the weight
// gradient's transposed route); one expert; fashion_vmoe_ti's layer (8 x 1680 rows, groups of
// 105, D 64, M 128).
const Case kCases[] = {{3, 37, 8, 20, 12},
                       {2, 600, 16, 40, 100},
                       {1, 300, 24, 12, 75},
                       {4, 530, 12, 33, 53},
                       {8, 1680, 64, 128, 105}};

}  // namespace

TEST_CASE("expert_mlp: the fused CPU kernels give the composed ops' bits on occupied rows") {
  REQUIRE(backend_supports(cpu_backend(), Entry::expert_mlp, DType::f32));
  for (const Case& c : kCases) {
    CAPTURE(c.e, c.r, c.d, c.m, c.capacity);
    for (bool dirty : {false, true}) {
      CAPTURE(dirty);
      const Inputs in = make_inputs(c.e, c.r, c.d, c.m, c.capacity, DType::f32, dirty, 21);
      const Run fused = run(in, true), composed = run(in, false);
      CHECK(fused.y == composed.y);
      CHECK(fused.gx == composed.gx);
      CHECK(fused.gw1 == composed.gw1);
      CHECK(fused.gb1 == composed.gb1);
      CHECK(fused.gw2 == composed.gw2);
      CHECK(fused.gb2 == composed.gb2);
    }
  }
}

TEST_CASE("expert_mlp: f64 agrees with the composed ops, and padding rows are zero") {
  for (const Case& c : kCases) {
    CAPTURE(c.e, c.r, c.d, c.m);
    const Inputs in = make_inputs(c.e, c.r, c.d, c.m, c.capacity, DType::f64, true, 22);
    const Run fused = run(in, true), composed = run(in, false);
    // OpenBLAS on runs of rows against whole buffers: the same sums, perhaps grouped otherwise.
    for (auto [a, b] : {std::pair{&fused.y, &composed.y},
                        {&fused.gx, &composed.gx},
                        {&fused.gw1, &composed.gw1},
                        {&fused.gb1, &composed.gb1},
                        {&fused.gw2, &composed.gw2},
                        {&fused.gb2, &composed.gb2}})
      CHECK(test::max_rel_error(*a, *b) <= 1e-12);
    // The second bias's gradient sums gy itself: the same chunks of rows in the same order as
    // reduce_sum, to the bit.
    CHECK(fused.gb2 == composed.gb2);
    const std::vector<int64_t> occ = in.occupied.cpu().to_vector<int64_t>();
    int64_t padding_rows = 0, nonzero = 0;
    for (size_t row = 0; row < occ.size(); ++row) {
      if (occ[row] >= 0) continue;
      ++padding_rows;
      for (int64_t j = 0; j < c.d; ++j)
        nonzero += fused.y[row * size_t(c.d) + size_t(j)] != 0.0;
    }
    CHECK(padding_rows > 0);
    CHECK(nonzero == 0);
  }
}

TEST_CASE("expert_mlp: finite-difference gradients in f64") {
  const Inputs in = make_inputs(2, 9, 3, 5, 4, DType::f64, true, 23);
  std::vector<Tensor> leaves;
  for (const Tensor* t : {&in.x, &in.w1, &in.b1, &in.w2, &in.b2}) {
    Tensor l = t->detach().clone();
    l.set_requires_grad(true);
    leaves.push_back(l);
  }
  const Tensor occupied = in.occupied;
  VMOE_CHECK_GRADCHECK(
      [occupied](const std::vector<Tensor>& v) {
        return expert_mlp(v[0], occupied, v[1], v[2], v[3], v[4]);
      },
      leaves);
}

TEST_CASE("expert_mlp: no rows, no tokens, and every row taken") {
  for (int64_t filled : {0, 1}) {
    CAPTURE(filled);
    const int64_t e = 2, r = 5, d = 3, m = 4;
    Tensor x = randn({e, r, d}, RngKey{5, 1}), w1 = randn({e, d, m}, RngKey{5, 2}),
           b1 = randn({e, m}, RngKey{5, 3}), w2 = randn({e, m, d}, RngKey{5, 4}),
           b2 = randn({e, d}, RngKey{5, 5});
    Tensor occ = Tensor::full({e * r}, filled ? 7.0 : -1.0, DType::i64);
    const std::vector<double> y = values(expert_mlp(x, occ, w1, b1, w2, b2));
    const std::vector<double> all =
        values(stacked_linear(bias_gelu(matmul(x, w1), b1), w2, b2) * double(filled));
    CHECK(y == all);
  }
  Tensor none =
      expert_mlp(Tensor::zeros({2, 0, 3}), Tensor::zeros({0}, DType::i64), Tensor::zeros({2, 3, 4}),
                 Tensor::zeros({2, 4}), Tensor::zeros({2, 4, 3}), Tensor::zeros({2, 3}));
  CHECK(none.shape() == Shape{2, 0, 3});
}

TEST_CASE("expert_mlp: arguments that do not fit name what was expected") {
  Tensor x = Tensor::zeros({2, 5, 3}), w1 = Tensor::zeros({2, 3, 4}), b1 = Tensor::zeros({2, 4}),
         w2 = Tensor::zeros({2, 4, 3}), b2 = Tensor::zeros({2, 3});
  Tensor occ = Tensor::zeros({10}, DType::i64);
  CHECK_THROWS_WITH(expert_mlp(x, Tensor::zeros({9}, DType::i64), w1, b1, w2, b2),
                    Catch::Contains("expert_mlp: occupied [9]") && Catch::Contains("[10]"));
  CHECK_THROWS_WITH(expert_mlp(x, Tensor::zeros({10}), w1, b1, w2, b2),
                    Catch::Contains("expert_mlp: occupied") && Catch::Contains("i64"));
  CHECK_THROWS_WITH(
      expert_mlp(x, occ, Tensor::zeros({2, 3, 5}), b1, w2, b2),
      Catch::Contains("expert_mlp: weights w1 [2, 3, 5]") && Catch::Contains("[E, D, M]"));
  CHECK_THROWS_WITH(expert_mlp(x, occ, w1, b1, w2, Tensor::zeros({2, 3}, DType::f64)),
                    Catch::Contains("expert_mlp"));
}
