// Matrix products (2-D, batched 3-D) and the fused dense layer.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// out [batch, m, n] = op(x) op(w) (+ bias [batch or 1, n]) for contiguous x ([batch, m, k], or
// [batch, k, m] with tx), w ([batch, k, n], or [batch, n, k] with tw) and out (batch 1: plain
// 2-D products). The bias is added by the backend's gemm as it stores C where it can
// (gemm_adds_bias), else filled into C for a beta-1 product; bias_rows is its number of rows
// (1: shared by every product).
void product_with_bias(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t bias_rows,
                       const Tensor& out, int64_t batch, int64_t m, int64_t k, int64_t n,
                       bool tx = false, bool tw = false, const Tensor& k_used = Tensor()) {
  const Backend& be = backend_for(x.device());
  const bool bias_in_gemm = bias.defined() && be.gemm_adds_bias;
  if (bias.defined() && !bias_in_gemm) {
    const int64_t row_stride = bias_rows > 1 ? bias.strides()[0] : 0;
    be.copy(
        Tensor::view_of(bias.storage(), {batch, m, n}, {row_stride, 0, bias.strides().back()},
                        bias.offset(), bias.dtype()),
        Tensor::view_of(out.storage(), {batch, m, n}, {m * n, n, 1}, out.offset(), out.dtype()));
  }
  GemmArgs g;
  g.trans_a = tx;
  g.trans_b = tw;
  g.m = m;
  g.n = n;
  g.k = k;
  g.batch = batch;
  g.a = x.device_raw();
  g.b = w.device_raw();
  g.c = out.device_raw();
  g.lda = tx ? m : k;
  g.ldb = tw ? k : n;
  g.ldc = n;
  g.stride_a = m * k;
  g.stride_b = k * n;
  g.stride_c = m * n;
  const Tensor bias_c = bias_in_gemm ? contiguous(bias) : Tensor();
  if (bias_in_gemm) {
    g.bias = bias_c.device_raw();
    g.stride_bias = bias_rows > 1 ? n : 0;
  }
  g.beta = bias.defined() && !bias_in_gemm ? 1.0 : 0.0;
  g.dtype = x.dtype();
  if (k_used.defined()) g.k_used = static_cast<const int64_t*>(k_used.device_raw());
  be.gemm(g);
  count_flops(2 * m * n * k * batch);
}

// op(A) op(B) for contiguous 2-D or same-batch 3-D operands.
Tensor matmul_core(const Tensor& a_in, const Tensor& b_in, bool ta, bool tb) {
  Tensor a = contiguous(a_in), b = contiguous(b_in);
  const bool batched = a.dim() == 3;
  const int64_t batch = batched ? a.size(0) : 1;
  const int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac;
  const int64_t kb = tb ? bc : br, n = tb ? br : bc;
  if (k != kb)
    op_error("matmul", "inner sizes differ: " + a.desc() + (ta ? "^T" : "") + " x " + b.desc() +
                           (tb ? "^T" : ""));
  Shape shape = batched ? Shape{batch, m, n} : Shape{m, n};
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  product_with_bias(a, b, Tensor(), 0, out, batch, m, k, n, ta, tb);
  if (needs_grad({&a, &b})) {
    record("matmul", out, {a, b}, [a, b, ta, tb](const Tensor& gc) {
      Tensor ga, gb;
      if (a.requires_grad()) {
        ga = ta ? matmul_core(b, gc, tb, true) : matmul_core(gc, b, false, !tb);
      }
      if (b.requires_grad()) {
        gb = tb ? matmul_core(gc, a, true, ta) : matmul_core(a, gc, !ta, false);
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, Trans ta, Trans tb) {
  check_defined("matmul", a, "a");
  check_defined("matmul", b, "b");
  check_same_device("matmul", a, b);
  check_same_dtype("matmul", a, b);
  check_float_or_bf16("matmul", a, "a");
  const bool ta_ = ta == Trans::yes, tb_ = tb == Trans::yes;
  if (b.dim() == 2 && a.dim() >= 2) {
    if (a.dim() == 2) return matmul_core(a, b, ta_, tb_);
    if (ta_)
      op_error("matmul", "Trans::yes on a rank-" + std::to_string(a.dim()) +
                             " a needs a batched b, got " + b.desc());
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    Tensor c = matmul_core(reshape(a, {-1, a.size(-1)}), b, false, tb_);
    out_shape.push_back(c.size(-1));
    return reshape(c, out_shape);
  }
  if (a.dim() == 3 && b.dim() == 3) {
    if (a.size(0) != b.size(0))
      op_error("matmul", "batch sizes differ: " + a.desc() + " and " + b.desc());
    return matmul_core(a, b, ta_, tb_);
  }
  op_error("matmul", "unsupported ranks " + a.desc() + " x " + b.desc() +
                         " (expected [..., M, K] x [K, N] or [B, M, K] x [B, K, N])");
}

Tensor matmul_over_rows(const Tensor& a_in, const Tensor& b_in, const Tensor& rows) {
  const char* op = "matmul_over_rows";
  check_defined(op, a_in, "a");
  check_defined(op, b_in, "b");
  check_defined(op, rows, "rows");
  check_same_device(op, a_in, b_in);
  check_same_device(op, a_in, rows);
  check_same_dtype(op, a_in, b_in);
  check_float_or_bf16(op, a_in, "a");
  check_rank(op, a_in, 3, "a");
  check_rank(op, b_in, 3, "b");
  const int64_t batch = a_in.size(0), k = a_in.size(1), m = a_in.size(2), n = b_in.size(2);
  if (b_in.size(0) != batch || b_in.size(1) != k)
    op_error(op, "a " + a_in.desc() + " and b " + b_in.desc() + " must be [B, K, M] and [B, K, N]");
  if (rows.dtype() != DType::i64 || rows.shape() != Shape{batch * k})
    op_error(op, "rows " + rows.desc() + " must be i64 [B * K] for a " + a_in.desc());
  const Tensor a = contiguous(a_in), b = contiguous(b_in);
  Tensor out = Tensor::empty({batch, m, n}, a.dtype(), a.device());
  product_with_bias(a, b, Tensor(), 0, out, batch, m, k, n, true, false, contiguous(rows));
  return out;
}

Tensor linear(const Tensor& x_in, const Tensor& w, const Tensor& bias) {
  check_defined("linear", x_in, "x");
  check_defined("linear", w, "w");
  check_rank("linear", w, 2, "w");
  check_same_dtype("linear", x_in, w);
  check_same_device("linear", x_in, w);
  check_float_or_bf16("linear", x_in, "x");
  const int64_t k = w.size(0), n = w.size(1);
  if (x_in.dim() < 1 || x_in.size(-1) != k)
    op_error("linear", "x " + x_in.desc() + " does not match kernel " + w.desc());
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != n || bias.dtype() != w.dtype()))
    op_error("linear", "bias " + bias.desc() + " does not match kernel " + w.desc());
  Tensor x = contiguous(x_in);
  Tensor wc = contiguous(w);
  int64_t rows = 1;  // not numel / k: K may be 0
  for (int64_t i = 0; i + 1 < x.dim(); ++i)
    rows *= x.size(i);
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  product_with_bias(x, wc, bias, 1, out, 1, rows, k, n);
  if (needs_grad({&x, &wc, &bias})) {
    record("linear", out, {x, wc, bias}, [x, wc, bias, rows, k, n](const Tensor& g_in) {
      Tensor gy = reshape(contiguous(g_in), {rows, n});
      Tensor gx, gw, gb;
      if (x.requires_grad()) gx = reshape(matmul_core(gy, wc, false, true), x.shape());
      if (wc.requires_grad()) gw = matmul_core(reshape(x, {rows, k}), gy, true, false);
      if (bias.defined() && bias.requires_grad()) gb = sum(gy, {0});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return out;
}

Tensor stacked_linear(const Tensor& x_in, const Tensor& w, const Tensor& bias) {
  const char* op = "stacked_linear";
  check_defined(op, x_in, "x");
  check_defined(op, w, "w");
  check_rank(op, x_in, 3, "x");
  check_rank(op, w, 3, "w");
  check_same_dtype(op, x_in, w);
  check_same_device(op, x_in, w);
  check_float_or_bf16(op, x_in, "x");
  const int64_t groups = w.size(0), k = w.size(1), n = w.size(2), rows = x_in.size(1);
  if (x_in.size(0) != groups || x_in.size(2) != k)
    op_error(op, "x " + x_in.desc() + " does not match kernels " + w.desc());
  if (bias.defined() &&
      (bias.dim() != 2 || bias.size(0) != groups || bias.size(1) != n || bias.dtype() != w.dtype()))
    op_error(op, "bias " + bias.desc() + " does not match kernels " + w.desc());
  Tensor x = contiguous(x_in);  // [G, R, K]
  Tensor wc = contiguous(w);    // [G, K, N]
  Tensor out = Tensor::empty({groups, rows, n}, x.dtype(), x.device());
  product_with_bias(x, wc, bias, groups, out, groups, rows, k, n);
  if (needs_grad({&x, &wc, &bias})) {
    record(op, out, {x, wc, bias}, [x, wc, bias, groups, n](const Tensor& gy) {
      // The gradients of matmul + broadcast add, computed as those ops compute them.
      Tensor gx, gw, gb;
      if (x.requires_grad()) gx = matmul_core(gy, wc, false, true);
      if (wc.requires_grad()) gw = matmul_core(x, gy, true, false);
      if (bias.defined() && bias.requires_grad())
        gb = reshape(sum_to(gy, {groups, 1, n}), {groups, n});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return out;
}

}  // namespace vmoe
