// Fused attention (core/ops_attention.cpp): the CPU kernels against the composed ops they replace
// (values and gradients), finite-difference gradients in f64 on both paths, argument errors, and
// the CUDA kernels' bodies (core/cuda/attention_bodies.h) run on the host over the kernels' grid
// and compared with the CPU kernels. A CUDA backend with the entries is compared as well.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
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

namespace {

// The output and the gradient of sum(self_attention(qkv) * r) on one path.
std::vector<double> run_self_attention(const Shape& qkv_shape, int64_t heads, DType dtype,
                                       AttentionPath path, Device device, uint64_t seed,
                                       std::vector<double>* grad) {
  Tensor qkv = randn(qkv_shape, RngKey{seed, 1}, 0, dtype, device);
  qkv.set_requires_grad(true);
  const int64_t d = qkv_shape[2] / 3;
  Tensor r = randn({qkv_shape[0], qkv_shape[1], d}, RngKey{seed, 2}, 0, dtype, device);
  Tensor out = self_attention(qkv, heads, 1.0 / std::sqrt(double(d / heads)), path);
  sum_all(out * r).backward();
  *grad = values(qkv.grad());
  return values(out);
}

}  // namespace

TEST_CASE("self_attention: views of the projection equal the permuted copies") {
  // [B, N, 3 * H * Dh]: ViT-Ti's 17 tokens and 3 heads of 64, and a second layout.
  const std::pair<Shape, int64_t> cases[] = {{{4, 17, 3 * 192}, 3}, {{2, 50, 3 * 32}, 4}};
  for (const auto& [shape, heads] : cases) {
    CAPTURE(shape_str(shape), heads);
    for (DType dtype : {DType::f64, DType::f32}) {
      const double tol = dtype == DType::f64 ? 1e-12 : 1e-5;  // as for attention above
      std::vector<double> g_fused, g_composed;
      const std::vector<double> fused = run_self_attention(
          shape, heads, dtype, AttentionPath::fused_if_available, kCpu, 3, &g_fused);
      const std::vector<double> composed =
          run_self_attention(shape, heads, dtype, AttentionPath::composed, kCpu, 3, &g_composed);
      CHECK(max_rel_error(fused, composed) <= tol);
      CHECK(max_rel_error(g_fused, g_composed) <= tol);
    }
  }
}

TEST_CASE("self_attention: finite-difference gradients in f64, fused and composed") {
  for (AttentionPath path : {AttentionPath::fused_if_available, AttentionPath::composed}) {
    CAPTURE(path == AttentionPath::composed ? "composed" : "fused");
    Tensor qkv = randn({2, 5, 3 * 6}, RngKey{78, 1}, 0, DType::f64);
    qkv.set_requires_grad(true);
    VMOE_CHECK_GRADCHECK(
        [path](const std::vector<Tensor>& in) { return self_attention(in[0], 2, 0.6, path); },
        {qkv});
  }
}

TEST_CASE("self_attention: counts attention's FLOPs, and bad shapes name what was expected") {
  for (AttentionPath path : {AttentionPath::fused_if_available, AttentionPath::composed}) {
    Tensor qkv = randn({2, 17, 3 * 24}, RngKey{4, 1}).set_requires_grad(true);
    FlopCount count;
    sum_all(self_attention(qkv, 3, 0.25, path)).backward();
    CHECK(count.flops() == 6 * (2 * 6 * 17 * 17 * 8));  // 2 forward, 4 backward products
  }
  CHECK_THROWS_WITH(self_attention(Tensor::zeros({2, 5, 10}), 2, 1.0),
                    Catch::Contains("self_attention: qkv must be [B, N, 3 * heads * Dh]") &&
                        Catch::Contains("[2, 5, 10]"));
  CHECK_THROWS_WITH(self_attention(Tensor::zeros({2, 5, 12}), 0, 1.0),
                    Catch::Contains("heads must be >= 1, got 0"));
  CHECK_THROWS_WITH(self_attention(Tensor::zeros({5, 12}), 2, 1.0), Catch::Contains("[5, 12]"));
}

// ---------------------------------------------------------------- CUDA bodies on the host

namespace {

using cuda::AttentionShape;

template <class T>
struct HostOutputs {
  std::vector<T> out, grads;  // grads: the storage of gq, gk and gv
  std::vector<cuda::compute_t<T>> lse;
};

// The buffers of one run of the kernels: q, k, v (and gq, gk, gv) at offsets of one storage,
// out and gout in another, laid out as `s` says.
struct AttentionBuffers {
  AttentionShape s;
  int64_t input_numel = 0, output_numel = 0;
  int64_t offset[3] = {0, 0, 0};  // q, k, v in the input storage
};

// Separate contiguous q, k, v [BH, N, Dh] (one storage, one after another).
AttentionBuffers separate_buffers(int64_t bh, int64_t n, int64_t dh) {
  const int64_t numel = bh * n * dh;
  return {cuda::contiguous_attention_shape(bh, n, dh), 3 * numel, numel, {0, numel, 2 * numel}};
}

// A fused projection qkv [B, N, 3, H, Dh] and merged heads out [B, N, H, Dh]: the layout of
// self_attention.
AttentionBuffers projection_buffers(int64_t b, int64_t h, int64_t n, int64_t dh) {
  const int64_t d = h * dh;
  const cuda::AttentionLayout in{h, n * 3 * d, dh, 3 * d}, out{h, n * d, dh, d};
  return {{b * h, n, dh, in, out}, b * n * 3 * d, b * n * d, {0, d, 2 * d}};
}

// attention_kernels.cu's three kernels, phase by phase over every block and thread: each phase
// runs for all of a block's threads before the next one (the barriers), with the block's
// shared tiles and per-thread states kept here. `in` holds q, k, v; `gout` is in out's layout.
template <class T>
HostOutputs<T> run_bodies(const std::vector<T>& in, const std::vector<T>& gout,
                          const AttentionBuffers& buf, double scale_in) {
  using C = cuda::compute_t<T>;
  const AttentionShape& s = buf.s;
  const T *q = in.data() + buf.offset[0], *k = in.data() + buf.offset[1],
          *v = in.data() + buf.offset[2];
  const C scale = C(scale_in);
  const int64_t threads = cuda::kAttentionBlockRows;
  const int64_t rows = cuda::attention_tile_rows<C>;
  const int64_t blocks = s.bh * cuda::attention_blocks_per_head(s.n);
  HostOutputs<T> o;
  o.out.assign(size_t(buf.output_numel), T{});
  o.grads.assign(size_t(buf.input_numel), T{});  // gq, gk, gv: views of one storage, like q, k, v
  o.lse.assign(size_t(s.bh * s.n), C(NAN));
  T *gq = o.grads.data() + buf.offset[0], *gk = o.grads.data() + buf.offset[1],
    *gv = o.grads.data() + buf.offset[2];
  std::vector<C> tile_a(size_t(rows * cuda::kAttentionMaxHeadDim));
  std::vector<C> tile_b = tile_a, lse_tile(static_cast<size_t>(rows)),
                 delta_tile(static_cast<size_t>(rows));
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionForwardState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_forward_begin(b, t, q, s, scale, st[size_t(t)]);
    for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_kv(b, t, threads, k, v, s, key0, tile_a.data(), tile_b.data());
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_forward_update(b, t, s, key0, tile_a.data(), tile_b.data(), st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_forward_end(b, t, s, st[size_t(t)], o.out.data(), o.lse.data());
  }
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionGradQState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_q_begin(b, t, q, o.out.data(), o.lse.data(), gout.data(), s, scale,
                                   st[size_t(t)]);
    for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_kv(b, t, threads, k, v, s, key0, tile_a.data(), tile_b.data());
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_grad_q_update(b, t, s, key0, tile_a.data(), tile_b.data(), st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_q_end(b, t, s, scale, st[size_t(t)], gq);
  }
  const cuda::AttentionQueryTile<C> tile{tile_a.data(), tile_b.data(), lse_tile.data(),
                                         delta_tile.data()};
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<cuda::AttentionGradKvState<C>> st(static_cast<size_t>(threads));
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_kv_begin(b, t, k, v, s, st[size_t(t)]);
    for (int64_t q0 = 0; q0 < s.n; q0 += rows) {
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_load_queries(b, t, threads, q, o.out.data(), o.lse.data(), gout.data(), s,
                                     q0, scale, tile);
      for (int64_t t = 0; t < threads; ++t)
        cuda::attention_grad_kv_update(b, t, s, q0, tile, st[size_t(t)]);
    }
    for (int64_t t = 0; t < threads; ++t)
      cuda::attention_grad_kv_end(b, t, s, st[size_t(t)], gk, gv);
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

// The [B, H, N, Dh] view of `storage` with a layout of `buf` at `offset`.
Tensor layout_view(const Tensor& storage, const AttentionBuffers& buf,
                   const cuda::AttentionLayout& l, int64_t offset) {
  const AttentionShape& s = buf.s;
  return Tensor::view_of(storage.storage(), {s.bh / l.heads, l.heads, s.n, s.dh},
                         {l.item_stride, l.head_stride, l.row_stride, 1}, offset, storage.dtype());
}

// The CPU kernels on the same values and layouts: out, lse and the gradients' storage (f64).
struct CpuRun {
  std::vector<double> out, lse, grads;
};
CpuRun run_cpu_kernels(const Tensor& in, const Tensor& gout, const AttentionBuffers& buf,
                       double scale) {
  const Backend& cpu = cpu_backend();
  const DType dtype = in.dtype(), lse_dtype = dtype == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty({buf.output_numel}, dtype, kCpu);
  Tensor lse = Tensor::empty({buf.s.bh, buf.s.n}, lse_dtype, kCpu);
  Tensor grads = Tensor::empty({buf.input_numel}, dtype, kCpu);
  auto input = [&](const Tensor& x, int i) { return layout_view(x, buf, buf.s.in, buf.offset[i]); };
  auto output = [&](const Tensor& x) { return layout_view(x, buf, buf.s.out, 0); };
  cpu.attention_forward(input(in, 0), input(in, 1), input(in, 2), scale, output(out), lse);
  cpu.attention_backward(input(in, 0), input(in, 1), input(in, 2), output(out), lse, output(gout),
                         scale, input(grads, 0), input(grads, 1), input(grads, 2));
  return {values(out), values(lse), values(grads)};
}

template <class T>
std::vector<T> host_values(const Tensor& t) {
  return t.cpu().to_vector<T>();
}

// Bodies (stored T) against the CPU kernels on the same inputs and layout, within `tol`.
template <class T>
void check_bodies(const AttentionBuffers& buf, DType dtype, double tol) {
  const Tensor in = randn({buf.input_numel}, RngKey{31, 1}, 0, dtype, kCpu);
  const Tensor g = randn({buf.output_numel}, RngKey{31, 4}, 0, dtype, kCpu);
  const double scale = 1.0 / std::sqrt(double(buf.s.dh));
  const HostOutputs<T> got = run_bodies<T>(host_values<T>(in), host_values<T>(g), buf, scale);
  const CpuRun want = run_cpu_kernels(in, g, buf, scale);
  CHECK(max_rel_error(as_doubles(got.out), want.out) <= tol);
  CHECK(max_rel_error(as_doubles(got.lse), want.lse) <= tol);
  CHECK(max_rel_error(as_doubles(got.grads), want.grads) <= tol);
}

}  // namespace

TEST_CASE("cuda attention bodies: forward and backward match the CPU kernels") {
  // Token counts around the tiles: one partial tile, an exact multiple of the 64-row blocks,
  // ViT-B/16's 197 and ViT's 50 with head dimensions up to the 128 maximum; separate q, k, v and
  // self_attention's views of a fused projection (ViT-Ti's 17 tokens, 3 heads of 64).
  const AttentionBuffers cases[] = {
      separate_buffers(2, 5, 3),        separate_buffers(3, 64, 16),
      separate_buffers(2, 50, 128),     separate_buffers(1, 197, 64),
      projection_buffers(2, 3, 17, 64), projection_buffers(3, 2, 70, 8)};
  for (const AttentionBuffers& buf : cases) {
    CAPTURE(buf.s.bh, buf.s.n, buf.s.dh, buf.s.in.heads);
    // f64: online softmax and one-thread sums against GEMMs and a two-pass softmax: the
    // same values up to summation order, relative ~1e-15 per operation.
    check_bodies<double>(buf, DType::f64, 1e-12);
    // f32: the same with f32 rounding (~6e-8) over sums of up to 197 * 128 terms; 2e-5 still
    // fails any wrong term (errors of order 1e-2 and up).
    check_bodies<float>(buf, DType::f32, 2e-5);
  }
}

TEST_CASE("cuda attention bodies: bf16 storage with f32 math matches the CPU kernels in f32") {
  // bf16 inputs are exact in f32: the CPU kernels run on the same values in f32; the outputs
  // are rounded once to bf16 (relative 2^-9), gradients included.
  const AttentionBuffers buf = projection_buffers(2, 2, 50, 32);
  const Tensor in = to_dtype(randn({buf.input_numel}, RngKey{41, 1}), DType::bf16);
  const Tensor g = to_dtype(randn({buf.output_numel}, RngKey{41, 4}), DType::bf16);
  const double scale = 1.0 / std::sqrt(double(buf.s.dh));
  const HostOutputs<BFloat16> got = run_bodies<BFloat16>(
      host_values<BFloat16>(in.cpu()), host_values<BFloat16>(g.cpu()), buf, scale);
  auto f32 = [](const Tensor& t) { return to_dtype(t, DType::f32).cpu(); };
  const CpuRun want = run_cpu_kernels(f32(in), f32(g), buf, scale);
  const double tol = 1.0 / 256;  // one bf16 rounding (2^-9) plus the f32 differences, with room
  CHECK(max_rel_error(as_doubles(got.out), want.out) <= tol);
  CHECK(max_rel_error(as_doubles(got.lse), want.lse) <= 1e-5);  // lse stays f32
  CHECK(max_rel_error(as_doubles(got.grads), want.grads) <= tol);
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
  // self_attention: the kernels on views of the projection and of the merged heads.
  for (DType dtype : {DType::f64, DType::f32}) {
    const double tol = dtype == DType::f64 ? 1e-12 : 2e-5;
    std::vector<double> g_device, g_cpu;
    const Shape shape{4, 17, 3 * 192};
    CHECK(max_rel_error(run_self_attention(shape, 3, dtype, AttentionPath::fused_if_available,
                                           cuda_device, 10, &g_device),
                        run_self_attention(shape, 3, dtype, AttentionPath::fused_if_available, kCpu,
                                           10, &g_cpu)) <= tol);
    CHECK(max_rel_error(g_device, g_cpu) <= tol);
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
