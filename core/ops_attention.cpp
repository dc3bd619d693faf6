// Scaled dot-product attention: the backend's fused kernels when it has them (forward keeps only
// out and the rows' log-sum-exp; backward recomputes the probabilities), else the composed ops.
#include <string>

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

Tensor fused_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, double scale) {
  const Backend& backend = backend_for(q_in.device());
  Tensor q = contiguous(q_in), k = contiguous(k_in), v = contiguous(v_in);
  const DType lse_dtype = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());               // [BH, N, Dh]
  Tensor lse = Tensor::empty({q.size(0), q.size(1)}, lse_dtype, q.device());  // [BH, N]
  backend.attention_forward(q, k, v, scale, out, lse);
  // The model's FLOPs, as the composed path's two products count them: q k^T and p v forward;
  // four products backward (dv, dp, dq, dk), not the recomputation of p.
  const int64_t product_flops = 2 * q.size(0) * q.size(1) * k.size(1) * q.size(2);
  count_flops(2 * product_flops);
  if (needs_grad({&q, &k, &v})) {
    Tensor saved_out = out.detach();
    record("attention", out, {q, k, v},
           [q, k, v, saved_out, lse, scale, product_flops](const Tensor& g) {
             count_flops(4 * product_flops);
             Tensor gq = Tensor::empty(q.shape(), q.dtype(), q.device());
             Tensor gk = Tensor::empty(q.shape(), q.dtype(), q.device());
             Tensor gv = Tensor::empty(q.shape(), q.dtype(), q.device());
             backend_for(q.device())
                 .attention_backward(q.detach(), k.detach(), v.detach(), saved_out, lse,
                                     contiguous(g), scale, gq, gk, gv);
             return std::vector<Tensor>{gq, gk, gv};
           });
  }
  return out;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                 AttentionPath path) {
  const char* op = "attention";
  check_defined(op, q, "q");
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  if (q.dtype() != DType::bf16) check_float(op, q, "q");  // bf16: mixed precision
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
  const Backend& backend = backend_for(q.device());
  const bool fused = path == AttentionPath::fused_if_available &&
                     backend_supports(backend, Entry::attention_forward, q.dtype()) &&
                     backend_supports(backend, Entry::attention_backward, q.dtype());
  Tensor out = fused ? fused_attention(q3, k3, v3, scale) : composed_attention(q3, k3, v3, scale);
  return reshape(out, q.shape());
}

}  // namespace vmoe
