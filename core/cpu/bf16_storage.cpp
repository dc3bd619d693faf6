// bf16 storage on the CPU: "load bf16 -> compute f32 -> round once on store". Each entry here
// widens its bf16 operands to f32 working copies, runs the f32 kernel of the same name and
// rounds the outputs to bf16 once, into the caller's (possibly strided) tensors. Operands of
// other dtypes pass through untouched, so an entry may mix bf16 activations with f32
// parameters or statistics (layer norm: f32 scale, bias, mean, rstd). Without a bf16 operand
// an entry is the f32/f64 kernel itself.
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu::via_f32 {

namespace {

bool is_bf16(const Tensor& t) {
  return t.defined() && t.dtype() == DType::bf16;
}

// An input in f32: a contiguous copy of a bf16 tensor (broadcast views are materialised);
// anything else as it is.
Tensor widened(const Tensor& t) {
  if (!is_bf16(t)) return t;
  Tensor w = Tensor::empty(t.shape(), DType::f32, t.device());
  cpu::copy(t, w);
  return w;
}

// A write-only output in f32: fresh f32 storage for a bf16 tensor; anything else as it is.
Tensor scratch(const Tensor& t) {
  if (!is_bf16(t)) return t;
  return Tensor::empty(t.shape(), DType::f32, t.device());
}

// Rounds the f32 result into the caller's bf16 output (element by element, its own strides).
void store(const Tensor& work, const Tensor& dst) {
  if (is_bf16(dst)) cpu::copy(work, dst);
}

// Elements a strided GEMM operand spans: batches, rows of `ld`, the last row's columns.
int64_t span(int64_t batch, int64_t stride, int64_t rows, int64_t cols, int64_t ld) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

std::vector<float> widen_span(const void* p, int64_t n) {
  const BFloat16* b = static_cast<const BFloat16*>(p);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[size_t(i)] = from_bf16(b[i]);
  return out;
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (!is_bf16(out)) return cpu::binary(op, a, b, out);
  Tensor o = scratch(out);
  cpu::binary(op, widened(a), widened(b), o);
  store(o, out);
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  if (!is_bf16(out)) return cpu::unary(op, x, out);
  Tensor o = scratch(out);
  cpu::unary(op, widened(x), o);
  store(o, out);
}

void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx) {
  if (!is_bf16(gx)) return cpu::unary_backward(op, x, y, gy, gx);
  Tensor o = scratch(gx);
  cpu::unary_backward(op, widened(x), widened(y), widened(gy), o);
  store(o, gx);
}

void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y) {
  if (!is_bf16(y)) return cpu::bias_gelu(x, bias, y);
  Tensor o = scratch(y);
  cpu::bias_gelu(widened(x), widened(bias), o);
  store(o, y);
}

void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx) {
  if (!is_bf16(gx)) return cpu::bias_gelu_backward(x, bias, gy, gx);
  Tensor o = scratch(gx);
  cpu::bias_gelu_backward(widened(x), widened(bias), widened(gy), o);
  store(o, gx);
}

void add_scaled(const Tensor& dst, const Tensor& src, double alpha) {
  if (!is_bf16(dst)) return cpu::add_scaled(dst, src, alpha);
  Tensor d = widened(dst);
  cpu::add_scaled(d, widened(src), alpha);
  store(d, dst);
}

void scale(const Tensor& dst, double s) {
  if (!is_bf16(dst)) return cpu::scale(dst, s);
  Tensor d = widened(dst);
  cpu::scale(d, s);
  store(d, dst);
}

void sum_squares(const Tensor& x, const Tensor& out) {
  cpu::sum_squares(widened(x), out);  // out is f64
}

void reduce_sum(const Tensor& x, const Tensor& out) {
  if (!is_bf16(out)) return cpu::reduce_sum(x, out);
  Tensor o = scratch(out);
  cpu::reduce_sum(widened(x), o);
  store(o, out);
}

void gemm(const GemmArgs& g) {
  if (g.dtype != DType::bf16) return cpu::gemm(g);
  // Panels widened to f32, one sgemm (f32 accumulation), C rounded once.
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  const std::vector<float> a = widen_span(g.a, span(g.batch, g.stride_a, a_rows, a_cols, g.lda));
  const std::vector<float> b = widen_span(g.b, span(g.batch, g.stride_b, b_rows, b_cols, g.ldb));
  const int64_t c_span = span(g.batch, g.stride_c, g.m, g.n, g.ldc);
  // C is read only when beta != 0 (it may hold garbage otherwise).
  std::vector<float> c = g.beta != 0 ? widen_span(g.c, c_span) : std::vector<float>(size_t(c_span));
  // Every batch entry's bias row (stride_bias apart).
  const std::vector<float> bias =
      g.bias ? widen_span(g.bias, (g.batch - 1) * g.stride_bias + g.n) : std::vector<float>();
  GemmArgs f = g;
  f.dtype = DType::f32;
  if (g.bias) f.bias = bias.data();
  f.a = a.data();
  f.b = b.data();
  f.c = c.data();
  cpu::gemm(f);
  // Only the [m, n] blocks: padding between rows and batches belongs to the caller.
  BFloat16* out = static_cast<BFloat16*>(g.c);
  for (int64_t i = 0; i < g.batch; ++i)
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col) {
        const int64_t at = i * g.stride_c + r * g.ldc + col;
        out[at] = to_bf16(c[size_t(at)]);
      }
}

void softmax(const Tensor& x, const Tensor& y, SoftmaxKind kind) {
  if (!is_bf16(y)) return cpu::softmax(x, y, kind);
  Tensor o = scratch(y);
  cpu::softmax(widened(x), o, kind);
  store(o, y);
}

void softmax_backward(const Tensor& y, const Tensor& gy, const Tensor& gx, SoftmaxKind kind) {
  if (!is_bf16(gx)) return cpu::softmax_backward(y, gy, gx, kind);
  Tensor o = scratch(gx);
  cpu::softmax_backward(widened(y), widened(gy), o, kind);
  store(o, gx);
}

void layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                const Tensor& y, const Tensor& mean, const Tensor& rstd) {
  if (!is_bf16(x) && !is_bf16(y)) return cpu::layer_norm(x, scale, bias, eps, y, mean, rstd);
  Tensor yo = scratch(y), mo = scratch(mean), ro = scratch(rstd);
  cpu::layer_norm(widened(x), widened(scale), widened(bias), eps, yo, mo, ro);
  store(yo, y);
  store(mo, mean);
  store(ro, rstd);
}

void layer_norm_backward(const Tensor& x, const Tensor& scale, const Tensor& mean,
                         const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                         const Tensor& gscale, const Tensor& gbias) {
  if (!is_bf16(x) && !is_bf16(gx))
    return cpu::layer_norm_backward(x, scale, mean, rstd, gy, gx, gscale, gbias);
  Tensor gxo = scratch(gx), gso = scratch(gscale), gbo = scratch(gbias);
  cpu::layer_norm_backward(widened(x), widened(scale), widened(mean), widened(rstd), widened(gy),
                           gxo, gso, gbo);
  store(gxo, gx);
  store(gso, gscale);
  store(gbo, gbias);
}

void dropout_mask(const Tensor& mask, double rate, RngKey key, uint64_t offset) {
  if (!is_bf16(mask)) return cpu::dropout_mask(mask, rate, key, offset);
  Tensor o = scratch(mask);
  cpu::dropout_mask(o, rate, key, offset);
  store(o, mask);
}

void random_fill(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                 double hi) {
  if (!is_bf16(out)) return cpu::random_fill(out, key, offset, dist, lo, hi);
  Tensor o = scratch(out);
  cpu::random_fill(o, key, offset, dist, lo, hi);
  store(o, out);
}

void patches(const Tensor& images, int64_t p, const Tensor& out, PatchDirection dir) {
  // A permutation of elements: bf16 in, bf16 out, no rounding at all.
  const Tensor& written = dir == PatchDirection::to_patches ? out : images;
  const Tensor& read = dir == PatchDirection::to_patches ? images : out;
  if (!is_bf16(written)) return cpu::patches(images, p, out, dir);
  Tensor w = scratch(written), r = widened(read);
  if (dir == PatchDirection::to_patches)
    cpu::patches(r, p, w, dir);
  else
    cpu::patches(w, p, r, dir);
  store(w, written);
}

void index_add(const Tensor& src, const Tensor& idx, const Tensor& out) {
  if (!is_bf16(out)) return cpu::index_add(src, idx, out);
  // Every row summed in f32, rounded once.
  Tensor o = widened(out);
  cpu::index_add(widened(src), idx, o);
  store(o, out);
}

void gather(const Tensor& x, const Tensor& idx, const Tensor& out) {
  if (!is_bf16(out)) return cpu::gather(x, idx, out);
  Tensor o = scratch(out);
  cpu::gather(widened(x), idx, o);
  store(o, out);
}

void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx) {
  if (!is_bf16(gx)) return cpu::gather_backward(gy, idx, gx);
  Tensor o = scratch(gx);
  cpu::gather_backward(widened(gy), idx, o);
  store(o, gx);
}

}  // namespace vmoe::cpu::via_f32
