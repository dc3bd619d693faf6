// The CUDA row kernels' math without a GPU: the bodies of core/cuda/row_bodies.h run here on
// host threads, one per CUDA thread, with a barrier for __syncthreads (test/core/cuda_host_grid.h),
// over the grid the launchers use (row_kernels.cu: one block per row, row_threads(n) threads)
// and over a smaller grid whose blocks take several rows; the results are compared with the CPU
// backend's entries on the same inputs, for f32, f64 and bf16 (the CPU's f32 on the bf16-rounded
// inputs).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/kernel_error_slot.h"
#include "core/cuda/reduce_bodies.h"
#include "core/cuda/row_bodies.h"
#include "core/kernel_errors.h"
#include "core/tensor.h"
#include "test/core/cuda_host_grid.h"

using namespace vmoe;
using namespace vmoe::test;
using vmoe::cuda::GridPos;

namespace {

// The launchers' grid for `rows` rows of n values, and 2 blocks of 32 threads that loop over
// rows and columns.
std::vector<std::pair<int64_t, int64_t>> row_grids(int64_t rows, int64_t n) {
  return {{cuda::row_blocks(rows), cuda::row_threads(n)}, {2, 32}};
}

template <class R>
Tensor ref_tensor(const std::vector<R>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, kCpu);
}

template <class T>
std::vector<T> rounded(const std::vector<ref_t<T>>& v) {
  std::vector<T> out;
  for (const auto& x : v)
    out.push_back(of_double<T>(double(x)));
  return out;
}

// The CPU's message for a label out of range, from the slot's fields.
std::string label_message(const char* op, const cuda::KernelErrorSlot& s) {
  return std::string(op) + ": label " + std::to_string(s.value) + " at position " +
         std::to_string(s.position) + " is outside [" + std::to_string(s.lo) + ", " +
         std::to_string(s.hi) + ")";
}

}  // namespace

TEMPLATE_TEST_CASE("cuda row bodies: softmax and its backward match the CPU backend",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const int64_t rows = 5;
  for (int64_t n : {8, 50, 577}) {
    for (SoftmaxKind kind : {SoftmaxKind::plain, SoftmaxKind::log}) {
      CAPTURE(n, kind == SoftmaxKind::log);
      // Large logits: without the max subtraction the sum would overflow.
      std::vector<T> x = random_of<T>(rows * n, -30, 30, uint32_t(n));
      x[3] = of_double<T>(95);
      const std::vector<T> gy = random_of<T>(rows * n, -1, 1, uint32_t(n + 1));
      const Tensor ty = Tensor::empty({rows, n}, dtype_of<R>(), kCpu);
      cpu.softmax(ref_tensor(as_ref(x), {rows, n}), ty, kind);
      // The backward from the CPU's y rounded to T, on both sides.
      const std::vector<T> y_in = rounded<T>(ty.to_vector<R>());
      const Tensor tgx = Tensor::empty({rows, n}, dtype_of<R>(), kCpu);
      cpu.softmax_backward(ref_tensor(as_ref(y_in), {rows, n}), ref_tensor(as_ref(gy), {rows, n}),
                           tgx, kind);
      for (auto [blocks, threads] : row_grids(rows, n)) {
        CAPTURE(blocks, threads);
        std::vector<T> y(static_cast<size_t>(rows * n)), gx(static_cast<size_t>(rows * n));
        run_blocks(blocks, threads, [&](const HostBlock& blk) {
          cuda::softmax_rows_body(blk, x.data(), y.data(), rows, n, kind);
        });
        run_blocks(blocks, threads, [&](const HostBlock& blk) {
          cuda::softmax_backward_rows_body(blk, y_in.data(), gy.data(), gx.data(), rows, n, kind);
        });
        // f32: the CPU's vectorised exp (a few ulps) and sums in another order.
        CHECK(max_rel_error(y, ty.to_vector<R>()) < tolerance<T>(1e-5));
        CHECK(max_rel_error(gx, tgx.to_vector<R>()) < tolerance<T>(1e-5));
        if (kind == SoftmaxKind::plain) {
          for (int64_t r = 0; r < rows; ++r) {
            double sum = 0;
            for (int64_t j = 0; j < n; ++j)
              sum += as_double(y[size_t(r * n + j)]);
            CHECK(sum == Approx(1.0).epsilon(tolerance<T>(1e-5) * 4));
          }
        }
      }
    }
  }
}

TEMPLATE_TEST_CASE("cuda row bodies: layer norm matches the CPU, with mean and rstd",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const int64_t rows = 4;
  const double eps = 1e-6;
  for (int64_t d : {192, 577}) {
    CAPTURE(d);
    // An offset of 100: the two-pass variance keeps its precision where E[x^2] - E[x]^2 would not.
    const std::vector<T> x = random_of<T>(rows * d, 99, 101, 3);
    const std::vector<T> scale = random_of<T>(d, 0.5, 1.5, 4), bias = random_of<T>(d, -0.5, 0.5, 5);
    const Tensor ty = Tensor::empty({rows, d}, dtype_of<R>(), kCpu);
    const Tensor tm = Tensor::empty({rows}, dtype_of<R>(), kCpu);
    const Tensor tr = Tensor::empty({rows}, dtype_of<R>(), kCpu);
    cpu.layer_norm(ref_tensor(as_ref(x), {rows, d}), ref_tensor(as_ref(scale), {d}),
                   ref_tensor(as_ref(bias), {d}), eps, ty, tm, tr);
    for (auto [blocks, threads] : row_grids(rows, d)) {
      CAPTURE(blocks, threads);
      // scale, bias, mean and rstd are in the compute type R (f32 for bf16 x).
      std::vector<T> y(static_cast<size_t>(rows * d));
      std::vector<R> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
      const std::vector<R> scale_r = as_ref(scale), bias_r = as_ref(bias);
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::layer_norm_rows_body(blk, x.data(), scale_r.data(), bias_r.data(), eps, y.data(),
                                   mean.data(), rstd.data(), rows, d);
      });
      // f32: the mean of 577 values ~100 is a sum ~6e4 whose ulp is 4e-3; the CPU's sequential
      // sum drifts by ~1e-4 of the mean (3e-6 of 1 + mean), and (x - mean) ~ 1 carries that into
      // y and rstd, amplified by rstd ~ 1.7: 1e-3.
      CHECK(max_rel_error(y, ty.to_vector<R>()) < tolerance<T>(1e-3));
      CHECK(max_rel_error(mean, tm.to_vector<R>()) < tolerance<T>(3e-6));
      CHECK(max_rel_error(rstd, tr.to_vector<R>()) < tolerance<T>(1e-3));
    }
  }
}

TEMPLATE_TEST_CASE("cuda row bodies: layer norm backward (gx and the column-summed gscale, gbias)",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  // 100 rows of 64: the parameter sums in 4 chunks; 3 rows of 577: one chunk, rows of several
  // columns per thread.
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{100, 64}, {3, 577}}) {
    CAPTURE(rows, d);
    const std::vector<T> x = random_of<T>(rows * d, -2, 2, 21);
    const std::vector<T> scale = random_of<T>(d, 0.5, 1.5, 22), bias = random_of<T>(d, -1, 1, 23);
    const std::vector<T> gy = random_of<T>(rows * d, -1, 1, 24);
    // mean and rstd from the CPU's forward, in the compute type on both sides.
    const Tensor ty = Tensor::empty({rows, d}, dtype_of<R>(), kCpu);
    const Tensor tm = Tensor::empty({rows}, dtype_of<R>(), kCpu);
    const Tensor tr = Tensor::empty({rows}, dtype_of<R>(), kCpu);
    cpu.layer_norm(ref_tensor(as_ref(x), {rows, d}), ref_tensor(as_ref(scale), {d}),
                   ref_tensor(as_ref(bias), {d}), 1e-5, ty, tm, tr);
    const std::vector<R> mean = tm.to_vector<R>(), rstd = tr.to_vector<R>();
    const std::vector<R> scale_r = as_ref(scale);
    const Tensor tgx = Tensor::empty({rows, d}, dtype_of<R>(), kCpu);
    const Tensor tgs = Tensor::empty({d}, dtype_of<R>(), kCpu);
    const Tensor tgb = Tensor::empty({d}, dtype_of<R>(), kCpu);
    cpu.layer_norm_backward(ref_tensor(as_ref(x), {rows, d}), ref_tensor(as_ref(scale), {d}),
                            ref_tensor(mean, {rows}), ref_tensor(rstd, {rows}),
                            ref_tensor(as_ref(gy), {rows, d}), tgx, tgs, tgb);

    const int64_t chunks = cuda::layer_norm_param_chunks(d, rows);
    if (rows == 100) CHECK(chunks == 4);
    for (auto [blocks, threads] : row_grids(rows, d)) {
      CAPTURE(blocks, threads);
      std::vector<T> gx(static_cast<size_t>(rows * d));
      std::vector<R> gs(static_cast<size_t>(d)), gb(static_cast<size_t>(d));
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::layer_norm_backward_rows_body(blk, x.data(), scale_r.data(), mean.data(), rstd.data(),
                                            gy.data(), gx.data(), rows, d);
      });
      std::vector<R> partials(static_cast<size_t>(2 * chunks * d));
      run_grid(cuda::element_blocks(chunks * d), cuda::kElementThreads, [&](const GridPos& p) {
        cuda::layer_norm_param_grad_partial_body(p, x.data(), mean.data(), rstd.data(), gy.data(),
                                                 partials.data(), rows, d, chunks);
      });
      run_grid(cuda::element_blocks(d), cuda::kElementThreads, [&](const GridPos& p) {
        cuda::layer_norm_param_grad_finish_body<T>(p, partials.data(), gs.data(), gb.data(), d,
                                                   chunks);
      });
      // f32: sums of up to 577 terms in another order.
      CHECK(max_rel_error(gx, tgx.to_vector<R>()) < tolerance<T>(1e-5));
      CHECK(max_rel_error(gs, tgs.to_vector<R>()) < tolerance<T>(1e-5));
      CHECK(max_rel_error(gb, tgb.to_vector<R>()) < tolerance<T>(1e-5));
    }
  }
}

TEMPLATE_TEST_CASE("cuda row bodies: softmax cross-entropy matches the CPU and reports a bad label",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const int64_t b = 6;
  for (int64_t c : {10, 577}) {
    CAPTURE(c);
    std::vector<T> logits = random_of<T>(b * c, -8, 8, uint32_t(c));
    logits[1] = of_double<T>(60);  // the max subtraction matters
    std::vector<int32_t> labels(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i)
      labels[size_t(i)] = int32_t((i * 7 + 3) % c);
    const Tensor tloss = Tensor::empty({b}, dtype_of<R>(), kCpu);
    const Tensor td = Tensor::empty({b, c}, dtype_of<R>(), kCpu);
    cpu.softmax_xent(ref_tensor(as_ref(logits), {b, c}), Tensor::from_vector(labels, {b}, kCpu),
                     tloss, td);
    // Rows 3 and 4 out of range: one is recorded, both rows get loss 0 and gradient 0.
    std::vector<int32_t> bad = labels;
    bad[3] = int32_t(c);
    bad[4] = -1;
    for (auto [blocks, threads] : row_grids(b, c)) {
      CAPTURE(blocks, threads);
      std::vector<T> loss(static_cast<size_t>(b)), dl(static_cast<size_t>(b * c));
      cuda::KernelErrorSlot slot{};
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::softmax_xent_rows_body(blk, logits.data(), labels.data(), loss.data(), dl.data(), b,
                                     c, &slot);
      });
      CHECK(slot.claimed == 0);
      // f32: sums in another order, log of the sum.
      CHECK(max_rel_error(loss, tloss.to_vector<R>()) < tolerance<T>(1e-5));
      CHECK(max_rel_error(dl, td.to_vector<R>()) < tolerance<T>(1e-5));

      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::softmax_xent_rows_body(blk, logits.data(), bad.data(), loss.data(), dl.data(), b, c,
                                     &slot);
      });
      // One of the two, with its own label (the first block to find one wins: on the device
      // whichever gets there first).
      REQUIRE(slot.claimed == 1);
      CHECK(slot.op == cuda::KernelErrorOp::softmax_xent);
      CHECK(((slot.position == 3 && slot.value == c) || (slot.position == 4 && slot.value == -1)));
      CHECK(slot.lo == 0);
      CHECK(slot.hi == c);
      for (int64_t r : {3, 4}) {
        CHECK(as_double(loss[size_t(r)]) == 0);
        for (int64_t j = 0; j < c; ++j)
          CHECK(as_double(dl[size_t(r * c + j)]) == 0);
      }
      // The other rows as before.
      const std::vector<R> ref_loss = tloss.to_vector<R>();
      for (int64_t r : {0, 1, 2, 5})
        CHECK(std::abs(as_double(loss[size_t(r)]) - double(ref_loss[size_t(r)])) <
              tolerance<T>(1e-5) * (1 + std::abs(double(ref_loss[size_t(r)]))));
    }
    // The slot's fields make the CPU's message.
    const std::vector<int32_t> only3 = [&] {
      std::vector<int32_t> v = labels;
      v[3] = int32_t(c);
      return v;
    }();
    cuda::KernelErrorSlot slot{};
    std::vector<T> loss(static_cast<size_t>(b)), dl(static_cast<size_t>(b * c));
    run_blocks(cuda::row_blocks(b), cuda::row_threads(c), [&](const HostBlock& blk) {
      cuda::softmax_xent_rows_body(blk, logits.data(), only3.data(), loss.data(), dl.data(), b, c,
                                   &slot);
    });
    CHECK_THROWS_WITH(cpu.softmax_xent(ref_tensor(as_ref(logits), {b, c}),
                                       Tensor::from_vector(only3, {b}, kCpu), tloss, td),
                      label_message("softmax_cross_entropy", slot));
  }
}

TEMPLATE_TEST_CASE("cuda row bodies: sigmoid cross-entropy matches the CPU and reports a bad label",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  const int64_t b = 5;
  for (int64_t c : {10, 300}) {
    CAPTURE(c);
    const std::vector<T> logits = random_of<T>(b * c, -6, 6, uint32_t(c + 5));
    std::vector<int32_t> labels(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i)
      labels[size_t(i)] = int32_t((i * 5 + 1) % c);
    const Tensor tloss = Tensor::empty({b}, dtype_of<R>(), kCpu);
    const Tensor td = Tensor::empty({b, c}, dtype_of<R>(), kCpu);
    cpu.sigmoid_xent(ref_tensor(as_ref(logits), {b, c}), Tensor::from_vector(labels, {b}, kCpu),
                     tloss, td);
    for (auto [blocks, threads] : row_grids(b, c)) {
      CAPTURE(blocks, threads);
      std::vector<T> loss(static_cast<size_t>(b)), dl(static_cast<size_t>(b * c));
      cuda::KernelErrorSlot slot{};
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::sigmoid_xent_rows_body(blk, logits.data(), labels.data(), loss.data(), dl.data(), b,
                                     c, &slot);
      });
      CHECK(slot.claimed == 0);
      // f32: a sum of c terms in another order.
      CHECK(max_rel_error(loss, tloss.to_vector<R>()) < tolerance<T>(1e-5));
      CHECK(max_rel_error(dl, td.to_vector<R>()) < tolerance<T>(1e-6));
    }
    // A label out of range: recorded, the row computed with no positive class.
    std::vector<int32_t> bad = labels;
    bad[2] = int32_t(c + 4);
    cuda::KernelErrorSlot slot{};
    std::vector<T> loss(static_cast<size_t>(b)), dl(static_cast<size_t>(b * c));
    run_blocks(cuda::row_blocks(b), cuda::row_threads(c), [&](const HostBlock& blk) {
      cuda::sigmoid_xent_rows_body(blk, logits.data(), bad.data(), loss.data(), dl.data(), b, c,
                                   &slot);
    });
    REQUIRE(slot.claimed == 1);
    CHECK(slot.op == cuda::KernelErrorOp::sigmoid_xent);
    CHECK(slot.position == 2);
    CHECK_THROWS_WITH(cpu.sigmoid_xent(ref_tensor(as_ref(logits), {b, c}),
                                       Tensor::from_vector(bad, {b}, kCpu), tloss, td),
                      label_message("sigmoid_cross_entropy", slot));
    // On the strict device the CPU goes on: the same row values.
    const Tensor sloss = Tensor::empty({b}, dtype_of<R>(), kCpu);
    const Tensor sd = Tensor::empty({b, c}, dtype_of<R>(), kCpu);
    const Tensor strict_logits = ref_tensor(as_ref(logits), {b, c}).to(kCpuStrict);
    const Tensor strict_labels = Tensor::from_vector(bad, {b}, kCpuStrict);
    const Tensor strict_loss = Tensor::empty({b}, dtype_of<R>(), kCpuStrict);
    const Tensor strict_d = Tensor::empty({b, c}, dtype_of<R>(), kCpuStrict);
    cpu_strict_backend().sigmoid_xent(strict_logits, strict_labels, strict_loss, strict_d);
    CHECK_THROWS(check_kernel_errors(kCpuStrict));
    CHECK(max_rel_error(loss, strict_loss.cpu().to_vector<R>()) < tolerance<T>(1e-5));
    CHECK(max_rel_error(dl, strict_d.cpu().to_vector<R>()) < tolerance<T>(1e-6));
  }
}

TEMPLATE_TEST_CASE("cuda row bodies: max over the last axis picks the CPU's value and column",
                   "[cuda_bodies]", float, double, BFloat16) {
  using T = TestType;
  using R = ref_t<T>;
  const Backend& cpu = cpu_backend();
  for (int64_t n : {7, 300}) {
    CAPTURE(n);
    const int64_t rows = 6;
    // Few distinct values: ties everywhere (the first column wins); NaN in column 0 of row 1
    // (column 0 wins, as the CPU's scan) and later in row 2 (skipped); row 3 all -inf.
    std::vector<T> x = random_of<T>(rows * n, 0, 4, uint32_t(n));
    for (T& v : x)
      v = of_double<T>(std::floor(as_double(v)));
    x[size_t(1 * n)] = of_double<T>(NAN);
    x[size_t(2 * n + n / 2)] = of_double<T>(NAN);
    for (int64_t j = 0; j < n; ++j)
      x[size_t(3 * n + j)] = of_double<T>(-INFINITY);
    const Tensor tv = Tensor::empty({rows}, dtype_of<R>(), kCpu);
    const Tensor ta = Tensor::empty({rows}, DType::i64, kCpu);
    cpu.max_last(ref_tensor(as_ref(x), {rows, n}), tv, ta);
    for (auto [blocks, threads] : row_grids(rows, n)) {
      CAPTURE(blocks, threads);
      std::vector<T> values(static_cast<size_t>(rows));
      std::vector<int64_t> arg(static_cast<size_t>(rows), -7);
      run_blocks(blocks, threads, [&](const HostBlock& blk) {
        cuda::max_last_rows_body(blk, x.data(), values.data(), arg.data(), rows, n);
      });
      CHECK(arg == ta.to_vector<int64_t>());
      const std::vector<R> ref = tv.to_vector<R>();
      for (int64_t r = 0; r < rows; ++r) {
        const double a = as_double(values[size_t(r)]), e = double(ref[size_t(r)]);
        CHECK(((a == e) || (std::isnan(a) && std::isnan(e))));
      }
    }
  }
}
