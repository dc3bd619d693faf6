// The experts' MLP on the dispatch buffer's occupied rows: one op, so that a backend can skip
// the padding rows (empty capacity slots, about a tenth of the buffer at capacity 1.05) and run
// both layers on a chunk of rows while it is in cache. Backward takes gx, the GELU's gradient
// and the bias gradients from the backend and the weight gradients from gemm over the rows that
// hold tokens (matmul_over_rows). Without the backend entries (CUDA, bf16) it composes matmul,
// bias_gelu and stacked_linear and zeroes the padding rows with a mask.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// Every argument contiguous; occupied [E * R] i64.
Tensor fused_expert_mlp(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                        const Tensor& w2, const Tensor& b2) {
  const int64_t e = x.size(0), r = x.size(1), d = x.size(2), m = w1.size(2);
  const Backend& backend = backend_for(x.device());
  Tensor pre = Tensor::empty({e, r, m}, x.dtype(), x.device());  // x w1
  Tensor h = Tensor::empty({e, r, m}, x.dtype(), x.device());    // gelu(pre + b1)
  Tensor out = Tensor::empty({e, r, d}, x.dtype(), x.device());
  backend.expert_mlp(x, occupied, w1, b1, w2, b2, pre, h, out);
  // The buffer's rows, as the composed ops count them (padding rows included).
  const int64_t layer_flops = 2 * e * r * d * m;
  count_flops(2 * layer_flops);
  if (needs_grad({&x, &w1, &b1, &w2, &b2})) {
    record("expert_mlp", out, {x, w1, b1, w2, b2},
           [x, occupied, w1, b1, w2, b2, pre, h, layer_flops](const Tensor& g) {
             const Tensor gy = contiguous(g);
             Tensor gpre = Tensor::empty(pre.shape(), x.dtype(), x.device());
             Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
             Tensor gb1 = Tensor::empty(b1.shape(), x.dtype(), x.device());
             Tensor gb2 = Tensor::empty(b2.shape(), x.dtype(), x.device());
             backend_for(x.device())
                 .expert_mlp_backward(gy, occupied, w1.detach(), b1.detach(), w2.detach(), pre,
                                      gpre, gx, gb1, gb2);
             count_flops(2 * layer_flops);
             // x^T gpre and h^T gy over the rows that hold tokens: gpre and h are 0 on the others.
             Tensor gw1 =
                 w1.requires_grad() ? matmul_over_rows(x.detach(), gpre, occupied) : Tensor();
             Tensor gw2 = w2.requires_grad() ? matmul_over_rows(h, gy, occupied) : Tensor();
             return std::vector<Tensor>{x.requires_grad() ? gx : Tensor(), gw1,
                                        b1.requires_grad() ? gb1 : Tensor(), gw2,
                                        b2.requires_grad() ? gb2 : Tensor()};
           });
  }
  return out;
}

}  // namespace

bool expert_mlp_is_fused(Device device, DType dtype) {
  const Backend& backend = backend_for(device);
  return backend_supports(backend, Entry::expert_mlp, dtype) &&
         backend_supports(backend, Entry::expert_mlp_backward, dtype);
}

Tensor expert_mlp(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                  const Tensor& w2, const Tensor& b2) {
  const char* op = "expert_mlp";
  check_defined(op, x, "x");
  check_defined(op, occupied, "occupied");
  for (const Tensor* t : {&w1, &b1, &w2, &b2}) {
    check_defined(op, *t, "weights");
    check_same_device(op, x, *t);
    check_same_dtype(op, x, *t);
  }
  check_same_device(op, x, occupied);
  check_float_or_bf16(op, x, "x");
  check_rank(op, x, 3, "x");
  const int64_t e = x.size(0), r = x.size(1), d = x.size(2);
  const int64_t m = w1.dim() == 3 ? w1.size(2) : -1;
  if (w1.shape() != Shape{e, d, m} || b1.shape() != Shape{e, m} || w2.shape() != Shape{e, m, d} ||
      b2.shape() != Shape{e, d})
    op_error(op, "weights w1 " + w1.desc() + ", b1 " + b1.desc() + ", w2 " + w2.desc() + ", b2 " +
                     b2.desc() + " do not fit x " + x.desc() +
                     " (expected [E, D, M], [E, M], [E, M, D], [E, D])");
  if (occupied.dtype() != DType::i64 || occupied.shape() != Shape{e * r})
    op_error(op, "occupied " + occupied.desc() + " must be i64 [E * R] = [" +
                     std::to_string(e * r) + "] for x " + x.desc());
  if (expert_mlp_is_fused(x.device(), x.dtype()))
    return fused_expert_mlp(contiguous(x), contiguous(occupied), contiguous(w1), contiguous(b1),
                            contiguous(w2), contiguous(b2));
  // 1 on rows that hold a token, 0 on padding rows (occupied -1).
  Tensor padding =
      equal(to_dtype(occupied, x.dtype()), Tensor::full({1}, -1.0, x.dtype(), x.device()));
  Tensor keep = add_scalar(mul_scalar(padding, -1.0), 1.0).reshape({e, r, 1});
  return stacked_linear(bias_gelu(matmul(x, w1), b1), w2, b2) * keep;
}

}  // namespace vmoe
