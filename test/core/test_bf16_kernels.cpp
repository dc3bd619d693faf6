// bf16 storage on the CPU backend (core/cpu/bf16_storage.cpp): every bf16 entry must compute
// "load bf16 -> compute f32 -> round once on store". Each case runs an entry on bf16 tensors
// and the same entry on f32 tensors holding the same (bf16-representable) values, and requires
// the bf16 output to be the f32 output rounded to bf16, bit for bit. GEMM and the reductions
// are also held against a double-precision truth on the same inputs, within half a bf16 ulp
// of the result (2^-8 relative) plus the f32 accumulation error.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

using namespace vmoe;

namespace {

const Backend& cpu() {
  return cpu_backend();
}

// f32 values drawn from N(0, scale^2), rounded to bf16 so that both dtypes hold them exactly.
Tensor bf16_values(const Shape& shape, uint64_t seed, double scale = 1.0) {
  return (randn(shape, RngKey{seed, 1}, 0, DType::f32, default_device()) * scale).to(DType::bf16);
}

// Bitwise: the bf16 output equals the f32 output rounded to bf16.
void require_rounded_equal(const Tensor& got_bf16, const Tensor& f32_result, const char* what) {
  INFO(what << ": " << got_bf16.desc() << " vs " << f32_result.desc());
  REQUIRE(got_bf16.dtype() == DType::bf16);
  REQUIRE(got_bf16.shape() == f32_result.shape());
  const std::vector<BFloat16> got = got_bf16.contiguous().cpu().to_vector<BFloat16>();
  const std::vector<float> want = f32_result.contiguous().cpu().to_vector<float>();
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].bits != to_bf16(want[i]).bits) {
      if (first < 0) first = int64_t(i);
      ++mismatches;
    }
  }
  INFO("first mismatch at flat index " << first << " of " << got.size());
  CHECK(mismatches == 0);
}

Tensor f32(const Tensor& t) {
  return t.to(DType::f32);
}

// |t| for f64 tensors holding bf16 values (their squares and roots are exact in f64).
Tensor abs_like(const Tensor& t) {
  return sqrt(square(t));
}

}  // namespace

TEST_CASE("bf16 kernels: the CPU backend declares bf16 storage for what mixed precision needs") {
  for (Entry e : {Entry::copy,           Entry::fill,
                  Entry::binary,         Entry::unary,
                  Entry::unary_backward, Entry::add_scaled,
                  Entry::scale,          Entry::sum_squares,
                  Entry::reduce_sum,     Entry::gemm,
                  Entry::softmax,        Entry::softmax_backward,
                  Entry::layer_norm,     Entry::layer_norm_backward,
                  Entry::dropout_mask,   Entry::patches,
                  Entry::index_select,   Entry::index_add,
                  Entry::gather,         Entry::gather_backward}) {
    INFO(entry_name(e));
    CHECK(backend_supports(cpu(), e, DType::bf16));
  }
  // The routing entries stay f32 (the router is an f32 island): reported, not faked.
  CHECK_FALSE(backend_supports(cpu(), Entry::topk, DType::bf16));
  CHECK_FALSE(backend_supports(cpu(), Entry::softmax_xent, DType::bf16));
}

TEST_CASE("bf16 kernels: copy rounds to nearest even and widens exactly") {
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0); 1 + 3 * 2^-8
  // goes up to 1 + 2^-6... (1 + 2^-7 is odd, so its upper neighbour 1 + 2^-6 wins).
  const Tensor x = Tensor::from_vector<float>({1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f}, {3});
  const std::vector<float> back = f32(x.to(DType::bf16)).cpu().to_vector<float>();
  CHECK(back == std::vector<float>{1.0f, 1.0f + 0x1p-6f, -2.5f});
}

TEST_CASE("bf16 kernels: elementwise entries equal the f32 kernels rounded once") {
  const Tensor a = bf16_values({37, 19}, 1), b = bf16_values({19}, 2);  // b broadcast
  for (auto [name, fn] :
       {std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>{
            "add", [](const Tensor&x, const Tensor&y) { return add(x, y); }},
        {"sub", [](const Tensor&x, const Tensor&y) { return sub(x, y); }},
        {"mul", [](const Tensor&x, const Tensor&y) { return mul(x, y); }},
        {"div", [](const Tensor&x, const Tensor&y) { return div(x, y); }}}) {
    require_rounded_equal(fn(a, b), fn(f32(a), f32(b)), name);
  }
  // A strided (transposed) operand.
  const Tensor t = bf16_values({19, 37}, 3).transpose(0, 1);
  require_rounded_equal(add(a, t), add(f32(a), f32(t)), "add, transposed b");
  for (auto [name, fn] : {std::pair<const char*, Tensor (*)(const Tensor&)>{"gelu", gelu},
                          {"exp", exp},
                          {"tanh", tanh},
                          {"sigmoid", sigmoid},
                          {"relu", relu},
                          {"square", square},
                          {"normal_cdf", normal_cdf}}) {
    require_rounded_equal(fn(a), fn(f32(a)), name);
  }
  require_rounded_equal(a * 0.3, f32(a) * double(from_bf16(to_bf16(0.3f))), "mul_scalar");
}

TEST_CASE("bf16 kernels: in-place updates load, compute in f32 and round once") {
  const Tensor src = bf16_values({5, 7}, 4);
  Tensor dst = bf16_values({5, 7}, 5);
  Tensor ref = f32(dst);
  add_(dst, src, 0.37);
  cpu().add_scaled(ref, f32(src), 0.37);
  require_rounded_equal(dst, ref, "add_");
  Tensor d2 = bf16_values({5, 7}, 6);
  Tensor r2 = f32(d2);
  scale_(d2, -1.7);
  scale_(r2, -1.7);
  require_rounded_equal(d2, r2, "scale_");
  // sum_squares accumulates in double: the same sum as on the widened values.
  CHECK(sum_squares(src).cpu().item() == sum_squares(f32(src)).cpu().item());
}

TEST_CASE("bf16 kernels: unary and softmax backward on the stored bf16 values") {
  const Tensor x = bf16_values({9, 33}, 7), gy = bf16_values({9, 33}, 8);
  for (UnaryOp op : {UnaryOp::gelu, UnaryOp::exp, UnaryOp::tanh, UnaryOp::sigmoid}) {
    Tensor y = Tensor::empty(x.shape(), DType::bf16);
    cpu().unary(op, x, y);
    Tensor gx = Tensor::empty(x.shape(), DType::bf16), gx32 = Tensor::empty(x.shape());
    cpu().unary_backward(op, x, y, gy, gx);
    // The f32 kernel sees what bf16 storage holds: x, the rounded y, gy.
    cpu().unary_backward(op, f32(x), f32(y), f32(gy), gx32);
    require_rounded_equal(gx, gx32, "unary_backward");
  }
  for (SoftmaxKind kind : {SoftmaxKind::plain, SoftmaxKind::log}) {
    Tensor y = Tensor::empty(x.shape(), DType::bf16), y32 = Tensor::empty(x.shape());
    cpu().softmax(x, y, kind);
    cpu().softmax(f32(x), y32, kind);
    require_rounded_equal(y, y32, "softmax");
    Tensor gx = Tensor::empty(x.shape(), DType::bf16), gx32 = Tensor::empty(x.shape());
    cpu().softmax_backward(y, gy, gx, kind);
    cpu().softmax_backward(f32(y), f32(gy), gx32, kind);
    require_rounded_equal(gx, gx32, "softmax_backward");
  }
}

TEST_CASE("bf16 kernels: layer norm of bf16 x with f32 scale, bias and statistics") {
  const Tensor x = bf16_values({6, 48}, 9, 3.0);
  const Tensor scale = randn({48}, RngKey{10, 1}) + 1.0, bias = randn({48}, RngKey{11, 1});
  const Tensor y = layer_norm(x, scale, bias, 1e-6);
  const Tensor y32 = layer_norm(f32(x), scale, bias, 1e-6);
  require_rounded_equal(y, y32, "layer_norm");
  // Backward: bf16 gx, f32 parameter gradients equal to the f32 kernel's on the same values.
  Tensor xg = x.detach().set_requires_grad(true), x32 = f32(x).set_requires_grad(true);
  Tensor s16 = scale.detach().set_requires_grad(true), s32 = scale.clone().set_requires_grad(true);
  Tensor b16 = bias.detach().set_requires_grad(true), b32 = bias.clone().set_requires_grad(true);
  const Tensor gy = bf16_values({6, 48}, 12);
  layer_norm(xg, s16, b16, 1e-6).backward(gy);
  layer_norm(x32, s32, b32, 1e-6).backward(f32(gy));
  require_rounded_equal(xg.grad(), x32.grad(), "layer_norm backward gx");
  REQUIRE(s16.grad().dtype() == DType::f32);
  CHECK(s16.grad().cpu().to_vector<float>() == s32.grad().cpu().to_vector<float>());
  CHECK(b16.grad().cpu().to_vector<float>() == b32.grad().cpu().to_vector<float>());
}

TEST_CASE("bf16 kernels: GEMM takes bf16 panels, accumulates in f32, rounds C once") {
  // [B, M, K] x [B, K, N], both transposes, a beta = 1 product (linear with a bias), and a
  // 2-D product large enough for OpenBLAS's threading.
  for (auto [ta, tb] : {std::pair{Trans::no, Trans::no}, std::pair{Trans::yes, Trans::no},
                        std::pair{Trans::no, Trans::yes}, std::pair{Trans::yes, Trans::yes}}) {
    const int64_t bt = 3, m = 17, k = 65, n = 23;
    const Tensor a = ta == Trans::yes ? bf16_values({bt, k, m}, 13) : bf16_values({bt, m, k}, 13);
    const Tensor b = tb == Trans::yes ? bf16_values({bt, n, k}, 14) : bf16_values({bt, k, n}, 14);
    const Tensor c = matmul(a, b, ta, tb);
    const Tensor c32 = matmul(f32(a), f32(b), ta, tb);
    require_rounded_equal(c, c32, "batched matmul");
    // Against the truth in double: |c - exact| <= half an ulp of bf16 (2^-8 relative) plus the
    // f32 accumulation error of a k-term dot product (k * 2^-24 * sum |a_i b_i|).
    const Tensor exact = matmul(a.to(DType::f64), b.to(DType::f64), ta, tb);
    const Tensor abs_sum = matmul(abs_like(a.to(DType::f64)), abs_like(b.to(DType::f64)), ta, tb);
    const std::vector<double> e = exact.cpu().to_vector<double>(),
                              s = abs_sum.cpu().to_vector<double>(),
                              g = c.to(DType::f64).cpu().to_vector<double>();
    for (size_t i = 0; i < e.size(); ++i)
      REQUIRE(std::abs(g[i] - e[i]) <= std::abs(e[i]) * 0x1p-8 + double(k) * 0x1p-24 * s[i]);
  }
  const Tensor x = bf16_values({300, 128}, 15), w = bf16_values({128, 96}, 16),
               bias = bf16_values({96}, 17);
  require_rounded_equal(linear(x, w, bias), linear(f32(x), f32(w), f32(bias)), "linear + bias");
  require_rounded_equal(matmul(x, w), matmul(f32(x), f32(w)), "large 2-D matmul");
}

TEST_CASE("bf16 kernels: reductions and dispatch/combine indexing") {
  const Tensor x = bf16_values({13, 300, 5}, 18);
  require_rounded_equal(sum(x, {1}), sum(f32(x), {1}), "sum over the middle axis");
  require_rounded_equal(sum(x, {0, 2}), sum(f32(x), {0, 2}), "sum over outer axes");
  // The sums are rounded from a double accumulation: within half a bf16 ulp of the truth
  // (u = 2^-8 relative: bf16 has 8 significant bits).
  const std::vector<double> exact = sum(x.to(DType::f64), {1}).cpu().to_vector<double>();
  const std::vector<double> got = sum(x, {1}).to(DType::f64).cpu().to_vector<double>();
  for (size_t i = 0; i < exact.size(); ++i)
    REQUIRE(std::abs(got[i] - exact[i]) <= std::abs(exact[i]) * 0x1p-8 + 1e-30);

  // Dispatch (index_select, bytes) and combine (index_add in f32, rounded once).
  const Tensor rows = bf16_values({8, 12}, 19);
  const Tensor idx = Tensor::from_vector<int64_t>({3, -1, 0, 3, 7, 3}, {6});
  const Tensor picked = index_select(rows, idx);
  require_rounded_equal(picked, index_select(f32(rows), idx), "index_select");
  const Tensor added = index_add(8, idx, bf16_values({6, 12}, 20));
  require_rounded_equal(added, index_add(8, idx, f32(bf16_values({6, 12}, 20))), "index_add");
  const Tensor gidx = Tensor::from_vector<int64_t>({2, 0, 11, 2, 5, 5}, {2, 3});
  const Tensor src = bf16_values({2, 12}, 21);
  require_rounded_equal(gather(src, gidx), gather(f32(src), gidx), "gather");
  Tensor gx = Tensor::empty({2, 12}, DType::bf16), gx32 = Tensor::empty({2, 12});
  const Tensor gy = bf16_values({2, 3}, 22);
  cpu().gather_backward(gy, gidx, gx);
  cpu().gather_backward(f32(gy), gidx, gx32);
  require_rounded_equal(gx, gx32, "gather_backward (repeated indices summed in f32)");
}

TEST_CASE("bf16 kernels: dropout masks and patches") {
  Tensor m16 = Tensor::empty({4, 50}, DType::bf16), m32 = Tensor::empty({4, 50});
  cpu().dropout_mask(m16, 0.3, RngKey{23, 4}, 17);
  cpu().dropout_mask(m32, 0.3, RngKey{23, 4}, 17);
  require_rounded_equal(m16, m32, "dropout_mask");
  const Tensor images = bf16_values({2, 8, 8, 3}, 24);
  require_rounded_equal(image_to_patches(images, 4), image_to_patches(f32(images), 4),
                        "image_to_patches");
}

TEST_CASE("bf16 kernels: ops that stay f32 refuse bf16 with a clear error") {
  const Tensor x = bf16_values({4, 6}, 25);
  CHECK_THROWS_WITH(topk(x, 2), Catch::Contains("topk") && Catch::Contains("bf16"));
  CHECK_THROWS_WITH(softmax_cross_entropy(x, Tensor::zeros({4}, DType::i32)),
                    Catch::Contains("logits") && Catch::Contains("bf16"));
}
