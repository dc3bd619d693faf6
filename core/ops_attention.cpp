// Scaled dot-product attention: the backend's fused kernels when it has them (forward keeps only
// out and the rows' log-sum-exp; backward recomputes the probabilities), else the composed ops.
// Self-attention on a fused q/k/v projection hands the kernels views of the projection and of
// the merged output: no permuted copies of q, k, v or of the heads, and one gradient tensor in
// the projection's layout.
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// q, k, v [BH, N, Dh] -> [BH, N, Dh] through the differentiable ops (the model's original path).
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  // Scaling q costs N*Dh per head instead of N*N on the scores.
  Tensor scores = matmul(q * scale, k, Trans::no, Trans::yes);  // [BH, N, N]
  return matmul(softmax(scores), v);
}

bool has_fused_kernels(const Tensor& x, AttentionPath path) {
  const Backend& backend = backend_for(x.device());
  return path == AttentionPath::fused_if_available &&
         backend_supports(backend, Entry::attention_forward, x.dtype()) &&
         backend_supports(backend, Entry::attention_backward, x.dtype());
}

// The model's FLOPs of attention on [B, H, N, Dh], as the composed path's products count them.
int64_t product_flops(const Tensor& q4) {
  return 2 * q4.size(0) * q4.size(1) * q4.size(2) * q4.size(2) * q4.size(3);
}

// The forward kernels on [B, H, N, Dh] views (core/backend.h); returns lse [B*H, N]. Counts q k^T
// and p v.
Tensor fused_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                     const Tensor& out) {
  const DType lse_dtype = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor lse = Tensor::empty({q.size(0) * q.size(1), q.size(2)}, lse_dtype, q.device());
  backend_for(q.device()).attention_forward(q, k, v, scale, out, lse);
  count_flops(2 * product_flops(q));
  return lse;
}

// The backward kernels; counts four products (dv, dp, dq, dk), not the recomputation of p.
void fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                    const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq,
                    const Tensor& gk, const Tensor& gv) {
  count_flops(4 * product_flops(q));
  backend_for(q.device()).attention_backward(q, k, v, out, lse, gout, scale, gq, gk, gv);
}

// x [BH, N, Dh] contiguous as the view [BH, 1, N, Dh].
Tensor one_head_view(const Tensor& x) {
  const int64_t n = x.size(1), dh = x.size(2);
  return Tensor::view_of(x.storage(), {x.size(0), 1, n, dh}, {n * dh, n * dh, dh, 1}, x.offset(),
                         x.dtype());
}

// q, k, v [BH, N, Dh] -> [BH, N, Dh] by the fused kernels.
Tensor fused_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale) {
  const Tensor q = contiguous(q_in), k = contiguous(k_in), v = contiguous(v_in);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  const Tensor lse = fused_forward(one_head_view(q), one_head_view(k), one_head_view(v), scale,
                                   one_head_view(out));
  if (needs_grad({&q, &k, &v})) {
    record("attention", out, {q, k, v},
           [q = q.detach(), k = k.detach(), v = v.detach(), saved_out = out.detach(), lse,
            scale](const Tensor& g) {
             std::vector<Tensor> grads;
             for (int i = 0; i < 3; ++i)
               grads.push_back(Tensor::empty(q.shape(), q.dtype(), q.device()));
             fused_backward(one_head_view(q), one_head_view(k), one_head_view(v),
                            one_head_view(saved_out), lse, one_head_view(contiguous(g)), scale,
                            one_head_view(grads[0]), one_head_view(grads[1]),
                            one_head_view(grads[2]));
             return grads;
           });
  }
  return out;
}

// The [B, H, N, Dh] view of part `part` of x [B, N, P*H*Dh] (contiguous) read as
// [B, N, P, H, Dh]: q, k, v of a fused projection (P 3), or merged heads (P 1).
Tensor head_view(const Tensor& x, int64_t heads, int64_t dh, int64_t part) {
  return Tensor::view_of(x.storage(), {x.size(0), heads, x.size(1), dh},
                         {x.strides()[0], dh, x.strides()[1], 1}, x.offset() + part * heads * dh,
                         x.dtype());
}

// qkv [B, N, 3*H*Dh] contiguous -> [B, N, H*Dh] by the fused kernels on views.
Tensor fused_self_attention(const Tensor& qkv, int64_t heads, double scale) {
  const int64_t dh = qkv.size(2) / (3 * heads);
  Tensor out = Tensor::empty({qkv.size(0), qkv.size(1), heads * dh}, qkv.dtype(), qkv.device());
  const Tensor lse =
      fused_forward(head_view(qkv, heads, dh, 0), head_view(qkv, heads, dh, 1),
                    head_view(qkv, heads, dh, 2), scale, head_view(out, heads, dh, 0));
  if (needs_grad({&qkv})) {
    record("self_attention", out, {qkv},
           [x = qkv.detach(), saved_out = out.detach(), lse, scale, heads, dh](const Tensor& g) {
             // q, k and v cover every column of the projection: their gradients fill gx.
             Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
             fused_backward(head_view(x, heads, dh, 0), head_view(x, heads, dh, 1),
                            head_view(x, heads, dh, 2), head_view(saved_out, heads, dh, 0), lse,
                            head_view(contiguous(g), heads, dh, 0), scale,
                            head_view(gx, heads, dh, 0), head_view(gx, heads, dh, 1),
                            head_view(gx, heads, dh, 2));
             return std::vector<Tensor>{gx};
           });
  }
  return out;
}

void check_attention_dtype(const char* op, const Tensor& x, const char* name) {
  check_defined(op, x, name);
  if (x.dtype() != DType::bf16) check_float(op, x, name);  // bf16: mixed precision
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                 AttentionPath path) {
  const char* op = "attention";
  check_attention_dtype(op, q, "q");
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  for (const Tensor* t : {&k, &v}) {
    check_same_dtype(op, q, *t);
    check_same_device(op, q, *t);
  }
  if (q.dim() < 2 || q.size(-1) == 0 || q.size(-2) == 0)
    op_error(op, "q must be [..., N, Dh] with N, Dh > 0, got " + q.desc());
  if (k.shape() != q.shape() || v.shape() != q.shape())
    op_error(op, "k " + k.desc() + " and v " + v.desc() + " must have q's shape " + q.desc());
  const int64_t n = q.size(-2), dh = q.size(-1), bh = q.numel() / (n * dh);
  // [..., N, Dh] -> [BH, N, Dh]: every path works on one batch axis.
  const Tensor q3 = reshape(q, {bh, n, dh}), k3 = reshape(k, {bh, n, dh}),
               v3 = reshape(v, {bh, n, dh});
  Tensor out = has_fused_kernels(q, path) ? fused_attention(q3, k3, v3, scale)
                                          : composed_attention(q3, k3, v3, scale);
  return reshape(out, q.shape());
}

Tensor self_attention(const Tensor& qkv, int64_t heads, double scale, AttentionPath path) {
  const char* op = "self_attention";
  check_attention_dtype(op, qkv, "qkv");
  if (heads < 1) op_error(op, "heads must be >= 1, got " + std::to_string(heads));
  if (qkv.dim() != 3 || qkv.size(1) == 0 || qkv.size(2) == 0 || qkv.size(2) % (3 * heads) != 0)
    op_error(op, "qkv must be [B, N, 3 * heads * Dh] with N, Dh > 0 and heads " +
                     std::to_string(heads) + ", got " + qkv.desc());
  const int64_t b = qkv.size(0), n = qkv.size(1), d = qkv.size(2) / 3, dh = d / heads;
  if (has_fused_kernels(qkv, path)) return fused_self_attention(contiguous(qkv), heads, scale);
  // [B, N, 3D] -> [3, B, H, N, Dh] copied, q, k, v sliced from it, the heads merged by a copy.
  const Tensor parts = contiguous(permute(reshape(qkv, {b, n, 3, heads, dh}), {2, 0, 3, 1, 4}));
  auto part = [&](int64_t i) { return reshape(slice(parts, 0, i, i + 1), {b * heads, n, dh}); };
  const Tensor out = attention(part(0), part(1), part(2), scale, path);  // [B*H, N, Dh]
  return reshape(permute(reshape(out, {b, heads, n, dh}), {0, 2, 1, 3}), {b, n, d});
}

}  // namespace vmoe
