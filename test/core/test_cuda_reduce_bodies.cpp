// The CUDA reductions' and scans' math without a GPU: the bodies of core/cuda/reduce_bodies.h
// run here over the launchers' grids (reduce_kernels.cu), block bodies on host threads with a
// barrier (test/core/cuda_host_grid.h), and are compared with the CPU backend's entries on the
// same inputs: f32, f64 and bf16 (the CPU's f32 on the bf16-rounded inputs), and i32/i64 for the
// cumulative sums. Both paths of each (row vs chunked column sums, per-line vs block scans) run.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/cuda/reduce_bodies.h"
#include "core/tensor.h"
#include "test/core/cuda_host_grid.h"

using namespace vmoe;
using namespace vmoe::test;
using vmoe::cuda::GridPos;

namespace {

// reduce_sum as launch_reduce_sum runs it: one block per output, or the chunked column sums.
template <class T>
std::vector<T> body_reduce_sum(const std::vector<T>& x, const Shape& xs, const Shape& os) {
  const cuda::ReduceSumPlan plan = cuda::make_reduce_sum_plan(xs, os);
  std::vector<T> out(static_cast<size_t>(plan.n_out), of_double<T>(NAN));
  if (cuda::reduce_sum_by_rows(plan)) {
    run_blocks(
        cuda::row_blocks(plan.n_out), cuda::row_threads(plan.n_red),
        [&](const HostBlock& blk) { cuda::reduce_sum_rows_body(blk, x.data(), out.data(), plan); });
    return out;
  }
  const int64_t chunks = cuda::column_chunks(plan.n_out, plan.n_red);
  std::vector<double> partials(static_cast<size_t>(cuda::reduce_sum_scratch(plan)), NAN);
  run_grid(cuda::element_blocks(chunks * plan.n_out), cuda::kElementThreads, [&](const GridPos& p) {
    cuda::reduce_sum_columns_body(p, x.data(), out.data(), partials.data(), plan, chunks);
  });
  if (chunks > 1) {
    run_grid(cuda::element_blocks(plan.n_out), cuda::kElementThreads, [&](const GridPos& p) {
      cuda::reduce_sum_finish_body(p, partials.data(), out.data(), plan.n_out, chunks);
    });
  }
  return out;
}

// cumsum as launch_cumsum runs it.
template <class T>
std::vector<T> body_cumsum(const std::vector<T>& x, int64_t outer, int64_t n, int64_t inner,
                           bool reverse) {
  std::vector<T> out(x.size());
  const int64_t lines = outer * inner;
  if (cuda::cumsum_by_blocks(lines, n)) {
    run_blocks(cuda::row_blocks(lines), cuda::kRowThreads, [&](const HostBlock& blk) {
      cuda::cumsum_block_body(blk, x.data(), out.data(), outer, n, inner, reverse);
    });
  } else {
    run_grid(cuda::element_blocks(lines), cuda::kElementThreads, [&](const GridPos& p) {
      cuda::cumsum_lines_body(p, x.data(), out.data(), outer, n, inner, reverse);
    });
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("cuda reduce bodies: sum of squares adds to out in double as the CPU",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  for (int64_t n : {1, 1000, 5000, 300000}) {
    CAPTURE(n);
    const std::vector<T> x = random_of<T>(n, -3, 3, uint32_t(n));
    const Tensor out = Tensor::full({1}, 2.5, DType::f64, kCpu);
    cpu_backend().sum_squares(Tensor::from_vector(as_ref(x), {n}, kCpu), out);
    const double ref = out.to_vector<double>()[0];
    // The launchers' grid (up to 1024 blocks of kRowThreads; 300000 elements would fill all
    // 1024, too many host threads for a test) and 4 blocks of 32 whose threads loop.
    std::vector<std::pair<int64_t, int64_t>> grids = {{4, 32}};
    if (n <= 5000) grids.push_back({cuda::sum_squares_blocks(n), cuda::kRowThreads});
    for (auto [blocks, threads] : grids) {
      CAPTURE(blocks, threads);
      std::vector<double> partials(static_cast<size_t>(blocks), NAN);
      double body_out = 2.5;  // += onto what is there
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::sum_squares_partial_body(blk, x.data(), n, partials.data());
      });
      run_blocks(1, cuda::kRowThreads, [&](const HostBlock& blk) {
        cuda::sum_squares_final_body(blk, partials.data(), blocks, &body_out);
      });
      // Both sum exact squares (of f32 / bf16 values) in double, in other orders: ~1e-15
      // apart for every type; f64 squares round once more (1e-12 as for every f64 comparison).
      CHECK(std::abs(body_out - ref) <= 1e-12 * std::abs(ref));
    }
  }
  CHECK(cuda::sum_squares_blocks(300000) == 1024);
}

TEMPLATE_TEST_CASE("cuda reduce bodies: sums over any axes keep the rank and match the CPU",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  struct Case {
    Shape xs, os;
  };
  const Case cases[] = {
      {{6, 7, 8}, {6, 7, 1}},      // last axis: one block per output
      {{6, 7, 8}, {1, 7, 8}},      // leading axis: column sums, one chunk
      {{6, 7, 8}, {1, 7, 1}},      // axes 0 and 2: neither block (kept axis between)
      {{6, 7, 8}, {6, 1, 8}},      // the middle axis
      {{6, 7, 8}, {1, 1, 1}},      // everything, in one block
      {{6, 7, 8}, {6, 7, 8}},      // nothing: a copy
      {{3000, 5}, {1, 5}},         // bias-gradient shape: 94 chunks of 32 rows
      {{40, 1, 900}, {40, 1, 1}},  // a size-1 axis kept; rows of 900 (several per thread)
  };
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.xs), shape_str(c.os));
    const int64_t n = shape_numel(c.xs);
    const std::vector<T> x = random_of<T>(n, -2, 2, uint32_t(n));
    const Tensor ref = Tensor::empty(c.os, dtype_of<R>(), kCpu);
    cpu_backend().reduce_sum(Tensor::from_vector(as_ref(x), c.xs, kCpu), ref);
    const std::vector<T> got = body_reduce_sum(x, c.xs, c.os);
    // Both sum in double (other orders) and round once to T: f32 / bf16 results agree up to that
    // one rounding's tie cases.
    CHECK(max_rel_error(got, ref.to_vector<R>()) < tolerance<T>(1e-7));
  }
  const cuda::ReduceSumPlan bias = cuda::make_reduce_sum_plan({3000, 5}, {1, 5});
  CHECK(!cuda::reduce_sum_by_rows(bias));
  CHECK(cuda::column_chunks(bias.n_out, bias.n_red) == 94);
}

TEMPLATE_TEST_CASE("cuda reduce bodies: cumulative sums forward and reverse match the CPU",
                   "[cuda_bodies]", float, double, BFloat16, int32_t, int64_t) {
  using T = TestType;
  constexpr bool integral = std::is_integral_v<T>;
  using R = std::conditional_t<integral, T, ref_t<T>>;
  struct Case {
    int64_t outer, n, inner;
  };
  // Per-line threads; one long line (arange's shape) and a few long lines: the block scan.
  for (const Case c : {Case{3, 50, 4}, Case{1, 3000, 1}, Case{2, 1500, 3}}) {
    for (bool reverse : {false, true}) {
      CAPTURE(c.outer, c.n, c.inner, reverse);
      const int64_t total = c.outer * c.n * c.inner;
      std::vector<T> x(static_cast<size_t>(total));
      const std::vector<double> u = random_of<double>(total, -2, 2, uint32_t(total));
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = integral ? T(std::floor(u[i] * 50)) : of_double<T>(u[i]);
      std::vector<R> xr(x.size());
      for (size_t i = 0; i < x.size(); ++i)
        xr[i] = R(as_double(x[i]));
      const Tensor ref = Tensor::empty({total}, dtype_of<R>(), kCpu);
      cpu_backend().cumsum(Tensor::from_vector(xr, {total}, kCpu), c.outer, c.n, c.inner,
                           reverse ? ScanDirection::reverse : ScanDirection::forward, ref);
      const std::vector<T> got = body_cumsum(x, c.outer, c.n, c.inner, reverse);
      if constexpr (integral) {
        CHECK(got == ref.to_vector<R>());  // exact, in any order
      } else {
        // Running sums of up to 3000 values of |x| < 2: the CPU's sequential f32 sum rounds at
        // every step (ulp ~4e-6 at magnitudes ~50), so it drifts by ~1e-5 from the block scan's
        // order: 5e-5 of 1 + |sum|. bf16 stores every running sum rounded: 1e-2.
        CHECK(max_rel_error(got, ref.to_vector<R>()) < tolerance<T>(5e-5));
      }
    }
  }
  CHECK(cuda::cumsum_by_blocks(1, 3000));
  CHECK(!cuda::cumsum_by_blocks(12, 50));
}

TEST_CASE("cuda reduce bodies: block sums give the same bits on every run", "[cuda_bodies]") {
  // The host threads interleave differently each run; the fixed tree order does not care.
  const int64_t n = 5000;
  const std::vector<float> x = random_of<float>(n, -1, 1, 99);
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    const std::vector<float> got = body_reduce_sum(x, {5, 1000}, {5, 1});
    if (run == 0)
      first = got;
    else
      CHECK(std::memcmp(first.data(), got.data(), first.size() * sizeof(float)) == 0);
  }
}
