// The CUDA kernels' math without a GPU: the __host__ __device__ bodies of
// core/cuda/kernel_bodies.h run here over the same grids the kernels use (every block and
// thread, the row kernels' block reductions in the same tree order as kernels.cu), and their
// results are compared with the CPU backend's kernels on the same inputs. The device run of
// the same kernels is test/gpu's job.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/cuda/kernel_bodies.h"
#include "core/tensor.h"

using namespace vmoe;
using vmoe::cuda::GridPos;

namespace {

// Runs `body(GridPos)` for every thread of a grid of `blocks` x `threads`.
template <class Body>
void run_grid(int64_t blocks, int64_t threads, Body&& body) {
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < threads; ++t)
      body(GridPos{b, t, threads, blocks});
}

// kernels.cu's block_reduce on the host: every thread's value into partials, then the tree
// steps for stride = threads / 2, ..., 1, each over every thread.
template <class Op>
float block_reduce(const std::vector<float>& values, Op op) {
  std::vector<float> partials = values;
  const int64_t threads = int64_t(partials.size());
  for (int64_t stride = threads / 2; stride > 0; stride /= 2)
    for (int64_t t = 0; t < threads; ++t)
      cuda::tree_reduce_step(partials.data(), t, stride, op);
  return partials[0];
}

std::vector<float> random_values(int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(size_t(n), 0.0f);
  for (float& x : v)
    x = u(rng);
  return v;
}

// Largest |a - b| / (1 + |b|).
double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / (1 + std::abs(double(b[i]))));
  return worst;
}

const char* name_of(UnaryOp op) {
  static const char* const names[] = {"neg",  "exp",  "log",    "tanh", "sigmoid",
                                      "relu", "sqrt", "square", "gelu", "normal_cdf"};
  return names[int(op)];
}

}  // namespace

TEST_CASE("cuda kernel bodies: unary ops and their derivatives match the CPU backend") {
  const Backend& cpu = cpu_backend();
  // 1000 elements over 3 blocks of 64 threads: the grid-stride loop visits each element once.
  const int64_t n = 1000;
  for (UnaryOp op :
       {UnaryOp::neg, UnaryOp::exp, UnaryOp::log, UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::relu,
        UnaryOp::sqrt, UnaryOp::square, UnaryOp::gelu, UnaryOp::normal_cdf}) {
    CAPTURE(name_of(op));
    const bool positive = op == UnaryOp::log || op == UnaryOp::sqrt;
    const std::vector<float> x = random_values(n, positive ? 0.1f : -4.0f, 4.0f, 7);
    const std::vector<float> gy = random_values(n, -1.0f, 1.0f, 8);
    std::vector<float> y(size_t(n), NAN), gx(size_t(n), NAN);
    run_grid(3, 64, [&](const GridPos& p) { cuda::unary_body(p, op, x.data(), y.data(), n); });
    run_grid(3, 64, [&](const GridPos& p) {
      cuda::unary_backward_body(p, op, x.data(), y.data(), gy.data(), gx.data(), n);
    });

    const Tensor tx = Tensor::from_vector(x, {n}, kCpu), tgy = Tensor::from_vector(gy, {n}, kCpu);
    const Tensor ty = Tensor::empty({n}, DType::f32, kCpu),
                 tgx = Tensor::empty({n}, DType::f32, kCpu);
    cpu.unary(op, tx, ty);
    cpu.unary_backward(op, tx, ty, tgy, tgx);
    // The CPU backend uses its own vectorised exp/tanh (core/cpu/fast_math.h): a few ulps apart.
    CHECK(max_rel_error(y, ty.to_vector<float>()) < 2e-6);
    CHECK(max_rel_error(gx, tgx.to_vector<float>()) < 2e-5);
  }
}

TEST_CASE("cuda kernel bodies: softmax rows (50 and 577 columns, 32-thread blocks) match the CPU") {
  const Backend& cpu = cpu_backend();
  const int64_t threads = 32;
  for (int64_t n : {50, 577}) {
    for (SoftmaxKind kind : {SoftmaxKind::plain, SoftmaxKind::log}) {
      CAPTURE(n, kind == SoftmaxKind::log);
      const int64_t rows = 5;
      // Large logits: the max subtraction must be there for the sum not to overflow.
      std::vector<float> x = random_values(rows * n, -30.0f, 30.0f, uint32_t(n));
      x[3] = 95.0f;
      std::vector<float> y(size_t(rows * n), NAN);
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = x.data() + r * n;
        std::vector<float> part(static_cast<size_t>(threads));
        for (int64_t t = 0; t < threads; ++t)
          part[size_t(t)] = cuda::softmax_partial_max(row, n, t, threads);
        const float m = block_reduce(part, cuda::MaxOp{});
        for (int64_t t = 0; t < threads; ++t)
          part[size_t(t)] = cuda::softmax_partial_sum(row, n, m, t, threads);
        const float s = block_reduce(part, cuda::SumOp{});
        for (int64_t t = 0; t < threads; ++t)
          cuda::softmax_write(row, y.data() + r * n, n, m, s, kind, t, threads);
      }
      const Tensor tx = Tensor::from_vector(x, {rows, n}, kCpu);
      const Tensor ty = Tensor::empty({rows, n}, DType::f32, kCpu);
      cpu.softmax(tx, ty, kind);
      CHECK(max_rel_error(y, ty.to_vector<float>()) < 1e-5);
      if (kind == SoftmaxKind::plain) {
        for (int64_t r = 0; r < rows; ++r) {
          double sum = 0;
          for (int64_t j = 0; j < n; ++j)
            sum += y[size_t(r * n + j)];
          CHECK(sum == Approx(1.0).epsilon(1e-5));
        }
      }
    }
  }
}

TEST_CASE("cuda kernel bodies: layer norm rows match the CPU, with mean and rstd") {
  const Backend& cpu = cpu_backend();
  const int64_t threads = 64, rows = 4, d = 192;
  const float eps = 1e-6f;
  // An offset of 100: the two-pass variance keeps its precision where E[x^2] - E[x]^2 would not.
  const std::vector<float> x = random_values(rows * d, 99.0f, 101.0f, 3);
  const std::vector<float> scale = random_values(d, 0.5f, 1.5f, 4);
  const std::vector<float> bias = random_values(d, -0.5f, 0.5f, 5);
  std::vector<float> y(static_cast<size_t>(rows * d), NAN);
  std::vector<float> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x.data() + r * d;
    std::vector<float> part(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      part[size_t(t)] = cuda::layer_norm_partial_sum(row, d, t, threads);
    const float mu = block_reduce(part, cuda::SumOp{}) / float(d);
    for (int64_t t = 0; t < threads; ++t)
      part[size_t(t)] = cuda::layer_norm_partial_var(row, d, mu, t, threads);
    const float rs = 1.0f / std::sqrt(block_reduce(part, cuda::SumOp{}) / float(d) + eps);
    for (int64_t t = 0; t < threads; ++t)
      cuda::layer_norm_write(row, scale.data(), bias.data(), y.data() + r * d, d, mu, rs, t,
                             threads);
    mean[size_t(r)] = mu;
    rstd[size_t(r)] = rs;
  }
  const Tensor ty = Tensor::empty({rows, d}, DType::f32, kCpu);
  const Tensor tm = Tensor::empty({rows}, DType::f32, kCpu),
               tr = Tensor::empty({rows}, DType::f32, kCpu);
  cpu.layer_norm(Tensor::from_vector(x, {rows, d}, kCpu), Tensor::from_vector(scale, {d}, kCpu),
                 Tensor::from_vector(bias, {d}, kCpu), eps, ty, tm, tr);
  CHECK(max_rel_error(y, ty.to_vector<float>()) < 1e-4);
  CHECK(max_rel_error(mean, tm.to_vector<float>()) < 1e-6);
  CHECK(max_rel_error(rstd, tr.to_vector<float>()) < 1e-4);
}
