// Fused attention (core/ops_attention.cpp): the CPU kernels against the composed ops they replace
// (values and gradients), finite-difference gradients in f64 on both paths, argument errors, and
// the CUDA kernels' bodies (core/cuda/attention_bodies.h) run on the host over the kernels' grid
// and compared with the CPU kernels. A CUDA backend with the entries is compared as well.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/cuda/attention_bodies.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

struct Grads {
  std::vector<double> out, gq, gk, gv;
};

std::vector<double> values(const Tensor& t) {
  NoGrad no_grad;
  return to_dtype(t, DType::f64).cpu().to_vector<double>();
}

// The output and the input gradients of sum(attention(q, k, v) * r) on one path.
Grads run_attention(const Shape& shape, DType dtype, AttentionPath path, Device device,
                    uint64_t seed) {
  auto input = [&](uint64_t stream) {
    Tensor t = randn(shape, RngKey{seed, stream}, 0, dtype, device);
    t.set_requires_grad(true);
    return t;
  };
  Tensor q = input(1), k = input(2), v = input(3);
  Tensor r = randn(shape, RngKey{seed, 4}, 0, dtype, device);
  const double scale = 1.0 / std::sqrt(double(shape.back()));
  Tensor out = attention(q, k, v, scale, path);
  sum_all(out * r).backward();
  return {values(out), values(q.grad()), values(k.grad()), values(v.grad())};
}

// Largest |a - b| / (1 + |b|), naming nothing: the callers CAPTURE what they compare.
double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / (1 + std::abs(b[i])));
  return worst;
}

void check_close(const Grads& got, const Grads& want, double tol) {
  CHECK(max_rel_error(got.out, want.out) <= tol);
  CHECK(max_rel_error(got.gq, want.gq) <= tol);
  CHECK(max_rel_error(got.gk, want.gk) <= tol);
  CHECK(max_rel_error(got.gv, want.gv) <= tol);
}

// ViT-like shapes: odd token counts (a class token), several tiles and a partial one.
const Shape kShapes[] = {{3, 17, 8}, {2, 2, 50, 16}, {1, 197, 64}};

}  // namespace

TEST_CASE("attention: the fused CPU kernels match the composed ops") {
  REQUIRE(backend_supports(cpu_backend(), Entry::attention_forward, DType::f64));
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    // f64: the kernels repeat the composed ops' steps (the same GEMMs and row loops); only the
    // GEMM blocking may differ, a few ulps of values of order 1.
    check_close(run_attention(shape, DType::f64, AttentionPath::fused_if_available, kCpu, 5),
                run_attention(shape, DType::f64, AttentionPath::composed, kCpu, 5), 1e-12);
    // f32: the same steps in f32; 1e-5 is ~100 ulps of the largest values, far below the
    // error of a wrong formula (order 1e-1) yet above any GEMM blocking difference.
    check_close(run_attention(shape, DType::f32, AttentionPath::fused_if_available, kCpu, 6),
                run_attention(shape, DType::f32, AttentionPath::composed, kCpu, 6), 1e-5);
  }
}

TEST_CASE("attention: finite-difference gradients in f64, fused and composed") {
  for (AttentionPath path : {AttentionPath::fused_if_available, AttentionPath::composed}) {
    CAPTURE(path == AttentionPath::composed ? "composed" : "fused");
    auto input = [](uint64_t stream) {
      Tensor t = randn({2, 3, 7, 5}, RngKey{77, stream}, 0, DType::f64);
      t.set_requires_grad(true);
      return t;
    };
    VMOE_CHECK_GRADCHECK(
        [path](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], 0.7, path); },
        {input(1), input(2), input(3)});
  }
}

TEST_CASE("attention: arguments that do not fit name what was expected") {
  Tensor q = Tensor::zeros({2, 5, 4});
  CHECK_THROWS_WITH(attention(q, Tensor::zeros({2, 6, 4}), q, 1.0),
                    Catch::Contains("attention: k [2, 6, 4]") &&
                        Catch::Contains("must have q's shape [2, 5, 4]"));
  CHECK_THROWS_WITH(attention(q, q, Tensor::zeros({2, 5, 4}, DType::f64), 1.0),
                    Catch::Contains("attention"));
  CHECK_THROWS_WITH(
      attention(Tensor::zeros({2, 0, 4}), Tensor::zeros({2, 0, 4}), Tensor::zeros({2, 0, 4}), 1.0),
      Catch::Contains("N, Dh > 0"));
}

// ---------------------------------------------------------------- CUDA bodies on the host

namespace {

using cuda::AttentionShape;

template <class T>
struct HostOutputs {
  std::vector<T> out, gq, gk, gv;
  std::vector<cuda::compute_t<T>> lse;
};

// attention_kernels.cu's three kernels, phase by phase over every block and thread: each phase
// runs for all of a block's threads before the next one (the barriers), with the block's
// shared tiles and per-thread states kept here.
template <class T>
HostOutputs<T> run_bodies(const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                          const std::vector<T>& gout, const AttentionShape& s, double scale_in) {
  using C = cuda::compute_t<T>;
  const C scale = C(scale_in);
  const int64_t threads = cuda::kAttentionBlockRows;
  const int64_t rows = cuda::attention_tile_rows<C>;
  const int64_t blocks = s.bh * cuda::attention_blocks_per_head(s.n);
  const size_t numel = size_t(s.bh * s.n * s.dh);
  HostOutputs<T> o;
  o.out.assign(numel, T{});
  o.gq = o.gk = o.gv = o.out;
  o.lse.assign(size_t(s.bh * s.n), C(NAN));
  std::vector<C> tile_a(size_t(rows * cuda::kAttentionMaxHeadDim));
  std::vector<C> tile_b = tile_a, lse_tile(static_cast<size_t>(rows)),
                 delta_tile(static_cast<size_t>(rows));
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionForwardState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_forward_begin(b, t, q.data(), s, scale, st[size_t(t)]);
    for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_kv(b, t, threads, k.data(), v.data(), s, key0, tile_a.data(),
                                tile_b.data());
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_forward_update(b, t, s, key0, tile_a.data(), tile_b.data(), st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_forward_end(b, t, s, st[size_t(t)], o.out.data(), o.lse.data());
  }
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionGradQState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_q_begin(b, t, q.data(), o.out.data(), o.lse.data(), gout.data(), s,
                                   scale, st[size_t(t)]);
    for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_kv(b, t, threads, k.data(), v.data(), s, key0, tile_a.data(),
                                tile_b.data());
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_grad_q_update(b, t, s, key0, tile_a.data(), tile_b.data(), st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_q_end(b, t, s, scale, st[size_t(t)], o.gq.data());
  }
  const cuda::AttentionQueryTile<C> tile{tile_a.data(), tile_b.data(), lse_tile.data(),
                                         delta_tile.data()};
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionGradKvState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_kv_begin(b, t, k.data(), v.data(), s, st[size_t(t)]);
    for (int64_t q0 = 0; q0 < s.n; q0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_queries(b, t, threads, q.data(), o.out.data(), o.lse.data(),
                                     gout.data(), s, q0, scale, tile);
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_grad_kv_update(b, t, s, q0, tile, st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_kv_end(b, t, s, st[size_t(t)], o.gk.data(), o.gv.data());
  }
  return o;
}

template <class T>
std::vector<double> as_doubles(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    d[i] = double(cuda::load(v[i]));
  return d;
}

// The CPU kernels on the same values: out, lse and the gradients (f64 for comparison).
struct CpuRun {
  std::vector<double> out, lse, gq, gk, gv;
};
CpuRun run_cpu_kernels(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& gout,
                       double scale) {
  const Backend& cpu = cpu_backend();
  const DType lse_dtype = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty(q.shape(), q.dtype(), kCpu);
  Tensor lse = Tensor::empty({q.size(0), q.size(1)}, lse_dtype, kCpu);
  Tensor gq = Tensor::empty(q.shape(), q.dtype(), kCpu), gk = gq.clone(), gv = gq.clone();
  cpu.attention_forward(q, k, v, scale, out, lse);
  cpu.attention_backward(q, k, v, out, lse, gout, scale, gq, gk, gv);
  return {values(out), values(lse), values(gq), values(gk), values(gv)};
}

template <class T>
std::vector<T> host_values(const Tensor& t) {
  return t.cpu().to_vector<T>();
}

// Bodies (stored T) against the CPU kernels on the same inputs, within `tol`.
template <class T>
void check_bodies(const AttentionShape& s, DType dtype, double tol) {
  const Shape shape{s.bh, s.n, s.dh};
  Tensor q = randn(shape, RngKey{31, 1}, 0, dtype, kCpu);
  Tensor k = randn(shape, RngKey{31, 2}, 0, dtype, kCpu);
  Tensor v = randn(shape, RngKey{31, 3}, 0, dtype, kCpu);
  Tensor g = randn(shape, RngKey{31, 4}, 0, dtype, kCpu);
  const double scale = 1.0 / std::sqrt(double(s.dh));
  const HostOutputs<T> got = run_bodies<T>(host_values<T>(q), host_values<T>(k), host_values<T>(v),
                                           host_values<T>(g), s, scale);
  const CpuRun want = run_cpu_kernels(q, k, v, g, scale);
  CHECK(max_rel_error(as_doubles(got.out), want.out) <= tol);
  CHECK(max_rel_error(as_doubles(got.lse), want.lse) <= tol);
  CHECK(max_rel_error(as_doubles(got.gq), want.gq) <= tol);
  CHECK(max_rel_error(as_doubles(got.gk), want.gk) <= tol);
  CHECK(max_rel_error(as_doubles(got.gv), want.gv) <= tol);
}

}  // namespace

TEST_CASE("cuda attention bodies: forward and backward match the CPU kernels") {
  // Token counts around the tiles: one partial tile, an exact multiple of the 64-row blocks,
  // ViT-B/16's 197 and ViT's 50 with head dimensions up to the 128 maximum.
  const AttentionShape shapes[] = {{2, 5, 3}, {3, 64, 16}, {2, 50, 128}, {1, 197, 64}};
  for (const AttentionShape& s : shapes) {
    CAPTURE(s.bh, s.n, s.dh);
    // f64: online softmax and one-thread sums against GEMMs and a two-pass softmax: the
    // same values up to summation order, relative ~1e-15 per operation.
    check_bodies<double>(s, DType::f64, 1e-12);
    // f32: the same with f32 rounding (~6e-8) over sums of up to 197 * 128 terms; 2e-5 still
    // fails any wrong term (errors of order 1e-2 and up).
    check_bodies<float>(s, DType::f32, 2e-5);
  }
}

TEST_CASE("cuda attention bodies: bf16 storage with f32 math matches the CPU kernels in f32") {
  // bf16 inputs are exact in f32: the CPU kernels run on the same values in f32; the outputs
  // are rounded once to bf16 (relative 2^-9), gradients included.
  const AttentionShape s{2, 50, 32};
  const Shape shape{s.bh, s.n, s.dh};
  Tensor q = to_dtype(randn(shape, RngKey{41, 1}), DType::bf16);
  Tensor k = to_dtype(randn(shape, RngKey{41, 2}), DType::bf16);
  Tensor v = to_dtype(randn(shape, RngKey{41, 3}), DType::bf16);
  Tensor g = to_dtype(randn(shape, RngKey{41, 4}), DType::bf16);
  const double scale = 1.0 / std::sqrt(double(s.dh));
  const HostOutputs<BFloat16> got = run_bodies<BFloat16>(
      host_values<BFloat16>(q.cpu()), host_values<BFloat16>(k.cpu()),
      host_values<BFloat16>(v.cpu()), host_values<BFloat16>(g.cpu()), s, scale);
  auto f32 = [](const Tensor& t) { return to_dtype(t, DType::f32).cpu(); };
  const CpuRun want = run_cpu_kernels(f32(q), f32(k), f32(v), f32(g), scale);
  const double tol = 1.0 / 256;  // one bf16 rounding (2^-9) plus the f32 differences, with room
  CHECK(max_rel_error(as_doubles(got.out), want.out) <= tol);
  CHECK(max_rel_error(as_doubles(got.lse), want.lse) <= 1e-5);  // lse stays f32
  CHECK(max_rel_error(as_doubles(got.gq), want.gq) <= tol);
  CHECK(max_rel_error(as_doubles(got.gk), want.gk) <= tol);
  CHECK(max_rel_error(as_doubles(got.gv), want.gv) <= tol);
}

TEST_CASE("attention: a CUDA backend's fused kernels match the CPU backend") {
  const Device cuda_device{DeviceType::cuda, 0};
  const Backend* backend = nullptr;
  try {
    backend = &backend_for(cuda_device);
    Tensor::zeros({1}, DType::f32, cuda_device);  // a device to run on, not only the table
  } catch (const std::exception& e) {
    WARN("skipped: no CUDA backend or device here (" << e.what() << ")");
    return;
  }
  if (!backend_supports(*backend, Entry::attention_forward, DType::f32)) {
    WARN("skipped: the CUDA backend has no attention_forward entry");
    return;
  }
  for (const Shape& shape : kShapes) {
    CAPTURE(shape_str(shape));
    // Online softmax in f64 against the CPU's two passes: summation order only.
    check_close(run_attention(shape, DType::f64, AttentionPath::fused_if_available, cuda_device, 8),
                run_attention(shape, DType::f64, AttentionPath::fused_if_available, kCpu, 8),
                1e-12);
    check_close(run_attention(shape, DType::f32, AttentionPath::fused_if_available, cuda_device, 9),
                run_attention(shape, DType::f32, AttentionPath::fused_if_available, kCpu, 9), 2e-5);
  }
}

TEST_CASE("attention: the fused path counts the composed path's FLOPs") {
  // The step benchmarks' MFU rests on the FLOP count: the fused op must count what the two
  // products (and their four backward products) of the composed path count.
  auto flops_of = [](AttentionPath path) {
    Tensor q = randn({2, 3, 17, 8}, RngKey{4, 1}).set_requires_grad(true);
    Tensor k = randn({2, 3, 17, 8}, RngKey{4, 2}).set_requires_grad(true);
    Tensor v = randn({2, 3, 17, 8}, RngKey{4, 3}).set_requires_grad(true);
    FlopCount count;
    sum_all(attention(q, k, v, 0.25, path)).backward();
    return count.flops();
  };
  const int64_t product = 2 * 6 * 17 * 17 * 8;
  CHECK(flops_of(AttentionPath::composed) == 6 * product);
  CHECK(flops_of(AttentionPath::fused_if_available) == 6 * product);
}
