// Fused bias + GELU (core/ops_bias_gelu.cpp): the op against the add and gelu it replaces
// (values and both gradients), finite-difference gradients in f64, bf16 storage, argument
// errors, and the CUDA kernels' bodies (core/cuda/kernel_bodies.h) run on the host over the
// kernels' grid against the CPU kernels. A CUDA backend with the entries is compared as well.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "test/core/cuda_host_grid.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

struct Run {
  std::vector<double> y, gx, gbias;
};

std::vector<double> values(const Tensor& t) {
  NoGrad no_grad;
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

// y and the gradients of sum(y * r) for y = bias_gelu(x, bias) (fused) or gelu(x + bias)
// (composed), bias [F] for x [..., F] or [G, F] for x [G, R, F].
Run run(const Shape& x_shape, const Shape& bias_shape, DType dtype, bool fused, Device device,
        uint64_t seed) {
  // Values exact in bf16, so that every dtype starts from the same numbers.
  auto values_of = [&](const Shape& shape, uint64_t stream, double scale) {
    Tensor t = mul_scalar(randn(shape, RngKey{seed, stream}, 0, DType::f32, device), scale);
    return to_dtype(to_dtype(t, DType::bf16), dtype);
  };
  auto input = [&](const Shape& shape, uint64_t stream) {
    Tensor t = values_of(shape, stream, 2.0);
    t.set_requires_grad(true);
    return t;
  };
  Tensor x = input(x_shape, 1), bias = input(bias_shape, 2);
  Tensor r = values_of(x_shape, 3, 1.0);
  Tensor y;
  if (fused) {
    y = bias_gelu(x, bias);
  } else {
    Shape b = bias_shape;
    if (b.size() == 2) b.insert(b.begin() + 1, 1);  // [G, 1, F]
    y = gelu(x + reshape(bias, b));
  }
  sum_all(to_dtype(y * r, DType::f32)).backward();
  return {values(y), values(x.grad()), values(bias.grad())};
}

double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  return test::max_rel_error(a, b);
}

struct Case {
  Shape x, bias;
};
// A dense layer's [B, T, F] with a shared bias, the stacked experts' [E, R, F] with one bias row
// per expert, and rows shorter than a vector.
const Case kCases[] = {
    {{2, 5, 7}, {7}}, {{3, 4, 6}, {3, 6}}, {{1, 3}, {3}}, {{4, 33, 130}, {4, 130}}};

}  // namespace

TEST_CASE("bias_gelu: the fused CPU kernels equal the composed add and gelu to the bit") {
  REQUIRE(backend_supports(cpu_backend(), Entry::bias_gelu, DType::f32));
  for (const Case& c : kCases) {
    CAPTURE(shape_str(c.x), shape_str(c.bias));
    for (DType dt : {DType::f32, DType::f64}) {
      CAPTURE(dtype_name(dt));
      // Same sum rounding, same GELU formula, same bias reduction: no difference at all.
      const Run fused = run(c.x, c.bias, dt, true, kCpu, 5);
      const Run composed = run(c.x, c.bias, dt, false, kCpu, 5);
      CHECK(fused.y == composed.y);
      CHECK(fused.gx == composed.gx);
      CHECK(fused.gbias == composed.gbias);
    }
  }
}

TEST_CASE("bias_gelu: bf16 storage stays within bf16 rounding of f32") {
  // The fused bf16 path keeps the sum in f32 (one rounding fewer than the composed ops); every
  // output is one bf16 rounding (2^-9 relative) of the f32 value of the same bf16 inputs.
  for (const Case& c : kCases) {
    CAPTURE(shape_str(c.x), shape_str(c.bias));
    const Run bf16 = run(c.x, c.bias, DType::bf16, true, kCpu, 6);
    const Run f32 = run(c.x, c.bias, DType::f32, true, kCpu, 6);
    CHECK(max_rel_error(bf16.y, f32.y) <= 1.0 / 128);
    CHECK(max_rel_error(bf16.gx, f32.gx) <= 1.0 / 128);
    // The bias gradient sums up to 4 * 33 rounded terms.
    CHECK(max_rel_error(bf16.gbias, f32.gbias) <= 0.05);
  }
}

TEST_CASE("bias_gelu: finite-difference gradients in f64") {
  for (const Case& c : {Case{{2, 3, 5}, {5}}, Case{{3, 4, 5}, {3, 5}}}) {
    CAPTURE(shape_str(c.x), shape_str(c.bias));
    Tensor x = mul_scalar(randn(c.x, RngKey{77, 1}, 0, DType::f64), 2.0);
    Tensor bias = randn(c.bias, RngKey{77, 2}, 0, DType::f64);
    x.set_requires_grad(true);
    bias.set_requires_grad(true);
    VMOE_CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return bias_gelu(in[0], in[1]); },
                         {x, bias});
  }
}

TEST_CASE("bias_gelu: arguments that do not fit name what was expected") {
  Tensor x = Tensor::zeros({2, 5, 4});
  CHECK_THROWS_WITH(bias_gelu(x, Tensor::zeros({5})),
                    Catch::Contains("bias_gelu: bias [5]") && Catch::Contains("[G, F]"));
  CHECK_THROWS_WITH(bias_gelu(x, Tensor::zeros({3, 4})), Catch::Contains("bias_gelu: bias [3, 4]"));
  CHECK_THROWS_WITH(bias_gelu(x, Tensor::zeros({4}, DType::f64)), Catch::Contains("bias_gelu"));
  // An empty x is fine.
  CHECK(bias_gelu(Tensor::zeros({0, 4}), Tensor::zeros({4})).shape() == Shape{0, 4});
}

// ---------------------------------------------------------------- CUDA bodies on the host

namespace {

// bias_gelu_body and its backward over the launchers' grid against the CPU kernels on the
// same stored values.
template <class T>
void check_bodies(int64_t groups, int64_t rows, int64_t f, DType dtype, double tol) {
  const int64_t n = groups * rows * f;
  const std::vector<T> x = test::random_of<T>(n, -4, 4, 11),
                       bias = test::random_of<T>(groups * f, -1, 1, 12),
                       gy = test::random_of<T>(n, -1, 1, 13);
  std::vector<T> y(static_cast<size_t>(n)), gx(static_cast<size_t>(n));
  const int64_t blocks = cuda::element_blocks(n);
  test::run_grid(blocks, cuda::kElementThreads, [&](const cuda::GridPos& p) {
    cuda::bias_gelu_body(p, x.data(), bias.data(), y.data(), rows, f, n);
  });
  test::run_grid(blocks, cuda::kElementThreads, [&](const cuda::GridPos& p) {
    cuda::bias_gelu_backward_body(p, x.data(), bias.data(), gy.data(), gx.data(), rows, f, n);
  });
  using R = test::ref_t<T>;
  const DType ref = dtype == DType::bf16 ? DType::f32 : dtype;
  auto tensor = [&](const std::vector<T>& v, const Shape& shape) {
    return Tensor::from_vector(test::as_ref(v), shape, kCpu);
  };
  const Tensor tx = tensor(x, {groups, rows, f}), tb = tensor(bias, {groups, f}),
               tg = tensor(gy, {groups, rows, f});
  Tensor want_y = Tensor::empty({groups, rows, f}, ref, kCpu), want_gx = want_y.clone();
  cpu_backend().bias_gelu(tx, tb, want_y);
  cpu_backend().bias_gelu_backward(tx, tb, tg, want_gx);
  CHECK(test::max_rel_error(y, want_y.to_vector<R>()) <= tol);
  CHECK(test::max_rel_error(gx, want_gx.to_vector<R>()) <= tol);
}

}  // namespace

TEMPLATE_TEST_CASE("cuda bias_gelu bodies match the CPU kernels", "", float, double, BFloat16) {
  const DType dt = std::is_same_v<TestType, float>    ? DType::f32
                   : std::is_same_v<TestType, double> ? DType::f64
                                                      : DType::bf16;
  // f32: libm tanh against the CPU's vectorised tanh, a few ulps.
  const double tol = test::tolerance<TestType>(1e-6);
  check_bodies<TestType>(1, 5, 7, dt, tol);     // one block, a partial one
  check_bodies<TestType>(3, 17, 130, dt, tol);  // several bias rows, rows across blocks
  check_bodies<TestType>(2, 1, 1, dt, tol);
}

TEST_CASE("bias_gelu: a CUDA backend's fused kernels match the CPU backend") {
  const Device cuda_device{DeviceType::cuda, 0};
  try {
    (void)backend_for(cuda_device);
    Tensor::zeros({1}, DType::f32, cuda_device);  // a device to run on, not only the table
  } catch (const std::exception& e) {
    WARN("skipped: no CUDA backend or device here (" << e.what() << ")");
    return;
  }
  for (const Case& c : kCases) {
    CAPTURE(shape_str(c.x), shape_str(c.bias));
    for (DType dt : {DType::f64, DType::f32}) {
      const double tol = dt == DType::f64 ? 1e-12 : 1e-6;
      const Run gpu = run(c.x, c.bias, dt, true, cuda_device, 7);
      const Run cpu = run(c.x, c.bias, dt, true, kCpu, 7);
      CHECK(max_rel_error(gpu.y, cpu.y) <= tol);
      CHECK(max_rel_error(gpu.gx, cpu.gx) <= tol);
      CHECK(max_rel_error(gpu.gbias, cpu.gbias) <= tol * 10);  // sums in another order
    }
  }
}
