// The CUDA MoE combine kernels without a GPU: the __host__ __device__ bodies of
// core/cuda/combine_bodies.h run here over a grid smaller than their data (every grid-stride
// loop wraps) and are compared with the CPU kernels, the reference, on routing with dropped
// choices and a row two choices share. The scatter of the weighted rows into y's gradient (the
// deterministic sort-based scatter of index_add, which runs in the GPU check) is replaced by its
// definition: a row's choices summed in choice order.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/cuda/combine_bodies.h"
#include "core/tensor.h"

using namespace vmoe;
using vmoe::cuda::GridPos;

namespace {

// Runs `body(GridPos)` for every thread of a grid of 3 blocks of 16 threads.
template <class Body>
void run_grid(Body&& body) {
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 16; ++t)
      body(GridPos{b, t, 16, 3});
}

template <class T>
std::vector<T> values(int64_t n, double phase) {
  std::vector<T> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = T(std::sin(phase + 0.7 * double(i)));
  return v;
}

template <class T>
double max_rel_error(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / (1 + std::abs(double(b[i]))));
  return worst;
}

template <class T>
void check_combine_bodies(DType dtype, double tol) {
  // 7 tokens, k 2, 9 buffer rows of 5: choices dropped (-1), row 4 used by two choices.
  const int64_t n = 7, k = 2, d = 5, r = 9;
  const std::vector<int64_t> rows = {0, 1, 2, -1, 4, 3, 4, 5, -1, -1, 6, 8, 7, 2};
  const std::vector<T> y = values<T>(r * d, 0.3), w = values<T>(n * k, 1.1),
                       g = values<T>(n * d, 2.9);
  // The CPU kernels.
  const Backend& cpu = cpu_backend();
  const Tensor ty = Tensor::from_vector(y, {r, d}, kCpu), tw = Tensor::from_vector(w, {n, k}, kCpu);
  const Tensor trows = Tensor::from_vector(rows, {n * k}, kCpu);
  const Tensor tg = Tensor::from_vector(g, {n, d}, kCpu);
  Tensor out = Tensor::empty({n, d}, dtype, kCpu), gy = Tensor::empty({r, d}, dtype, kCpu),
         gw = Tensor::empty({n, k}, dtype, kCpu);
  cpu.combine(ty, tw, trows, out);
  cpu.combine_backward(ty, tw, trows, tg, gy, gw);
  // The bodies.
  std::vector<T> h_out(size_t(n * d)), h_gw(size_t(n * k)), weighted(size_t(n * k * d));
  run_grid([&](const GridPos& p) {
    cuda::combine_body(p, y.data(), w.data(), rows.data(), h_out.data(), n, d, k, r);
  });
  run_grid([&](const GridPos& p) {
    cuda::combine_weight_grad_body(p, y.data(), rows.data(), g.data(), h_gw.data(), n, d, k, r);
  });
  run_grid([&](const GridPos& p) {
    cuda::combine_weighted_rows_body(p, w.data(), g.data(), weighted.data(), n, d, k);
  });
  std::vector<T> h_gy(size_t(r * d), T(0));
  for (int64_t a = 0; a < n * k; ++a)
    if (rows[size_t(a)] >= 0)
      for (int64_t c = 0; c < d; ++c)
        h_gy[size_t(rows[size_t(a)] * d + c)] += weighted[size_t(a * d + c)];
  CHECK(max_rel_error(h_out, out.to_vector<T>()) <= tol);
  CHECK(max_rel_error(h_gw, gw.to_vector<T>()) <= tol);
  CHECK(max_rel_error(h_gy, gy.to_vector<T>()) <= tol);
  // Not vacuous: a dropped choice's weight gradient is 0, the shared row sums two choices.
  CHECK(h_gw[3] == T(0));
  CHECK(std::abs(double(h_gy[size_t(4 * d)]) -
                 double(w[4] * g[size_t(2 * d)] + w[6] * g[size_t(3 * d)])) <= tol);
}

}  // namespace

TEST_CASE("cuda combine bodies: forward and backward match the CPU kernels") {
  // The same products and sums in the same order: rounding alone (FMA contraction may differ).
  check_combine_bodies<double>(DType::f64, 1e-14);
  check_combine_bodies<float>(DType::f32, 1e-6);
}
