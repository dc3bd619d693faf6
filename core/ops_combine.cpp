// The MoE combine: each token's output is the weighted sum of the expert outputs its choices
// landed in; and the dispatch, whose backward is a combine with unit weights. Fused, the rows are
// read in place and backward needs no [N * k, D] copies; without the backend entries (or with
// weights in another dtype than y: the f32 router island under bf16 activations) it composes
// gather, cast, product and sum, in the weights' dtype.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

Tensor fused_combine(const Tensor& y, const Tensor& weights, const Tensor& rows) {
  const Backend& backend = backend_for(y.device());
  const int64_t n = weights.size(0), d = y.size(1);
  Tensor out = Tensor::empty({n, d}, y.dtype(), y.device());
  backend.combine(y, weights, rows, out);
  if (needs_grad({&y, &weights})) {
    record("combine", out, {y, weights}, [y, weights, rows](const Tensor& g) {
      Tensor gy = Tensor::empty(y.shape(), y.dtype(), y.device());
      Tensor gw = Tensor::empty(weights.shape(), weights.dtype(), weights.device());
      backend_for(y.device())
          .combine_backward(y.detach(), weights.detach(), rows, contiguous(g), gy, gw);
      return std::vector<Tensor>{gy, gw};
    });
  }
  return out;
}

}  // namespace

Tensor combine(const Tensor& y, const Tensor& weights, const Tensor& rows) {
  const char* op = "combine";
  check_defined(op, y, "y");
  check_defined(op, weights, "weights");
  check_defined(op, rows, "rows");
  check_same_device(op, y, weights);
  check_same_device(op, y, rows);
  check_float_or_bf16(op, y, "y");
  check_float_or_bf16(op, weights, "weights");
  check_rank(op, y, 2, "y");
  check_rank(op, weights, 2, "weights");
  if (rows.dtype() != DType::i64 || rows.dim() != 1 || rows.size(0) != weights.numel())
    op_error(op, "rows " + rows.desc() + " must be i64 [N * k] for weights " + weights.desc());
  const int64_t n = weights.size(0), k = weights.size(1), d = y.size(1);
  const Backend& backend = backend_for(y.device());
  const bool fused = y.dtype() == weights.dtype() &&
                     backend_supports(backend, Entry::combine, y.dtype()) &&
                     backend_supports(backend, Entry::combine_backward, y.dtype());
  if (fused) return fused_combine(contiguous(y), contiguous(weights), contiguous(rows));
  const Tensor picked = to_dtype(index_select(y, rows), weights.dtype());  // [N * k, D]
  return to_dtype(sum((picked * reshape(weights, {n * k, 1})).reshape({n, k, d}), {1}), y.dtype());
}

Tensor dispatch(const Tensor& x, const Tensor& dispatch_rows, const Tensor& combine_rows) {
  const char* op = "dispatch";
  check_defined(op, x, "x");
  check_defined(op, combine_rows, "combine_rows");
  check_rank(op, x, 2, "x");
  const int64_t n = x.size(0);
  if (combine_rows.dtype() != DType::i64 || combine_rows.dim() != 1 ||
      (n > 0 && combine_rows.size(0) % n != 0) || (n == 0 && combine_rows.size(0) != 0))
    op_error(op, "combine_rows " + combine_rows.desc() + " must be i64 [N * k] for x " + x.desc());
  const Backend& backend = backend_for(x.device());
  if (!needs_grad({&x}) || !backend_supports(backend, Entry::combine, x.dtype()))
    return index_select(x, dispatch_rows);
  Tensor out;
  {
    NoGrad no_grad;
    out = index_select(x, dispatch_rows);
  }
  const int64_t k = n > 0 ? combine_rows.size(0) / n : 1;
  const Tensor rows = contiguous(combine_rows);
  record("dispatch", out, {x},
         [n, k, rows, shape = x.shape(), dtype = x.dtype(), device = x.device()](const Tensor& g) {
           Tensor ones = Tensor::full({n, k}, 1.0, dtype, device);
           Tensor gx = Tensor::empty(shape, dtype, device);
           backend_for(device).combine(contiguous(g), ones, rows, gx);
           return std::vector<Tensor>{gx};
         });
  return out;
}

}  // namespace vmoe
