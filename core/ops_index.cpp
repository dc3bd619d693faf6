// Indexing ops: row select / scatter-add (MoE dispatch and combine), gather along the last
// axis, top-k, argsort, argmax, one-hot.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// Index values are checked by the kernels (core/kernel_errors.h): no host read here.
void check_row_indices(const char* op, const Tensor& idx, const Tensor& data) {
  check_index(op, idx, "idx");
  if (idx.dim() != 1) op_error(op, "idx must be 1-D, got " + idx.desc());
  check_same_device(op, idx, data);
}

Shape with_rows(const Shape& s, int64_t rows) {
  Shape out = s;
  out[0] = rows;
  return out;
}

}  // namespace

Tensor index_select(const Tensor& x_in, const Tensor& idx_in) {
  check_defined("index_select", x_in, "x");
  if (x_in.dim() < 1) op_error("index_select", "x must have rank >= 1, got " + x_in.desc());
  check_row_indices("index_select", idx_in, x_in);
  Tensor x = contiguous(x_in), idx = contiguous(idx_in);
  Tensor out = Tensor::empty(with_rows(x.shape(), idx.numel()), x.dtype(), x.device());
  backend_for(x.device()).index_select(x, idx, out);
  if (needs_grad({&x})) {
    const int64_t rows = x.size(0);
    record("index_select", out, {x},
           [idx, rows](const Tensor& g) { return std::vector<Tensor>{index_add(rows, idx, g)}; });
  }
  return out;
}

Tensor index_add(int64_t rows, const Tensor& idx_in, const Tensor& src_in) {
  check_defined("index_add", src_in, "src");
  check_float_or_bf16("index_add", src_in, "src");
  check_row_indices("index_add", idx_in, src_in);
  if (rows < 0) op_error("index_add", "rows must be >= 0, got " + std::to_string(rows));
  if (src_in.dim() < 1 || src_in.size(0) != idx_in.numel())
    op_error("index_add",
             "src " + src_in.desc() + " needs one row per index, got " + idx_in.desc());
  Tensor src = contiguous(src_in), idx = contiguous(idx_in);
  Tensor out = Tensor::zeros(with_rows(src.shape(), rows), src.dtype(), src.device());
  backend_for(src.device()).index_add(src, idx, out);
  if (needs_grad({&src})) {
    record("index_add", out, {src},
           [idx](const Tensor& g) { return std::vector<Tensor>{index_select(g, idx)}; });
  }
  return out;
}

Tensor gather(const Tensor& x_in, const Tensor& idx_in) {
  check_defined("gather", x_in, "x");
  check_float_or_bf16("gather", x_in, "x");
  check_index("gather", idx_in, "idx");
  if (x_in.dim() != idx_in.dim() || x_in.dim() < 1)
    op_error("gather", "x " + x_in.desc() + " and idx " + idx_in.desc() + " need the same rank");
  for (int64_t i = 0; i + 1 < x_in.dim(); ++i)
    if (x_in.shape()[size_t(i)] != idx_in.shape()[size_t(i)])
      op_error("gather",
               "x " + x_in.desc() + " and idx " + idx_in.desc() + " differ outside the last axis");
  check_same_device("gather", x_in, idx_in);
  Tensor x = contiguous(x_in), idx = contiguous(idx_in);
  Tensor out = Tensor::empty(idx.shape(), x.dtype(), x.device());
  backend_for(x.device()).gather(x, idx, out);
  if (needs_grad({&x})) {
    Shape xshape = x.shape();
    record("gather", out, {x}, [idx, xshape](const Tensor& g) {
      Tensor gx = Tensor::empty(xshape, g.dtype(), g.device());
      backend_for(g.device()).gather_backward(contiguous(g), idx, gx);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

TopK topk(const Tensor& x_in, int64_t k) {
  check_defined("topk", x_in, "x");
  check_float("topk", x_in, "x");
  if (x_in.dim() < 1 || k < 1 || k > x_in.size(-1))
    op_error("topk", "k = " + std::to_string(k) + " must be in [1, " +
                         std::to_string(x_in.dim() ? x_in.size(-1) : 0) + "] for " + x_in.desc());
  Tensor x = contiguous(x_in);
  Shape shape = x.shape();
  shape.back() = k;
  Tensor indices = Tensor::empty(shape, DType::i64, x.device());
  Tensor values_raw = Tensor::empty(shape, x.dtype(), x.device());
  backend_for(x.device()).topk(x, k, values_raw, indices);
  // Values go through gather so that they carry the gradient.
  Tensor values = needs_grad({&x}) ? gather(x, indices) : values_raw;
  return {values, indices};
}

Tensor argsort(const Tensor& x_in, Order order) {
  check_defined("argsort", x_in, "x");
  if (x_in.dim() < 1) op_error("argsort", "x must have rank >= 1, got " + x_in.desc());
  Tensor x = contiguous(x_in);
  Tensor out = Tensor::empty(x.shape(), DType::i64, x.device());
  backend_for(x.device())
      .argsort(x, order == Order::descending ? SortOrder::descending : SortOrder::ascending, out);
  return out;
}

Tensor argmax(const Tensor& x_in) {
  check_defined("argmax", x_in, "x");
  check_float("argmax", x_in, "x");
  Tensor x = contiguous(x_in);
  if (x.dim() < 1 || x.size(-1) == 0)
    op_error("argmax", "needs a non-empty last axis, got " + x.desc());
  Shape rshape(x.shape().begin(), x.shape().end() - 1);
  Tensor values = Tensor::empty(rshape, x.dtype(), x.device());
  Tensor arg = Tensor::empty(rshape, DType::i64, x.device());
  backend_for(x.device()).max_last(x, values, arg);
  return arg;
}

Tensor one_hot(const Tensor& idx_in, int64_t classes, DType dtype) {
  check_index("one_hot", idx_in, "idx");
  if (classes < 1) op_error("one_hot", "classes must be >= 1, got " + std::to_string(classes));
  Tensor idx = contiguous(idx_in);
  Shape shape = idx.shape();
  shape.push_back(classes);
  Tensor out = Tensor::empty(shape, dtype, idx.device());
  backend_for(idx.device()).one_hot(idx, out);
  return out;
}

}  // namespace vmoe
