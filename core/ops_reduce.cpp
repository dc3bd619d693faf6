// Reductions: sum / mean over axes, max over one axis, broadcast-gradient reduction, cumsum.
#include <algorithm>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// Result shape with kept (size-1) reduced axes, and the list of reduced axes.
Shape keepdim_shape(const Tensor& x, const std::vector<int64_t>& axes, const char* op,
                    std::vector<bool>& reduced) {
  reduced.assign(size_t(x.dim()), false);
  for (int64_t a : axes)
    reduced[size_t(normalize_axis(a, x.dim(), op))] = true;
  Shape s = x.shape();
  for (size_t i = 0; i < s.size(); ++i)
    if (reduced[i]) s[i] = 1;
  return s;
}

Shape drop_reduced(const Shape& kept, const std::vector<bool>& reduced) {
  Shape s;
  for (size_t i = 0; i < kept.size(); ++i)
    if (!reduced[i]) s.push_back(kept[i]);
  return s;
}

}  // namespace

Tensor sum(const Tensor& x_in, const std::vector<int64_t>& axes, KeepDim keep) {
  check_defined("sum", x_in, "x");
  check_float_or_bf16("sum", x_in, "x");
  std::vector<bool> reduced;
  const Shape kept = keepdim_shape(x_in, axes, "sum", reduced);
  Tensor x = contiguous(x_in);
  Tensor out = Tensor::empty(kept, x.dtype(), x.device());
  backend_for(x.device()).reduce_sum(x, out);
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    record("sum", out, {x}, [in_shape](const Tensor& g) {
      return std::vector<Tensor>{contiguous(expand(g, in_shape))};
    });
  }
  return keep == KeepDim::yes ? out : reshape(out, drop_reduced(kept, reduced));
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, KeepDim keep) {
  int64_t count = 1;
  std::vector<bool> reduced;
  keepdim_shape(x, axes, "mean", reduced);
  for (size_t i = 0; i < reduced.size(); ++i)
    if (reduced[i]) count *= x.shape()[i];
  return mul_scalar(sum(x, axes, keep), 1.0 / double(std::max<int64_t>(count, 1)));
}

Tensor sum_all(const Tensor& x) {
  std::vector<int64_t> axes(size_t(x.dim()));
  for (int64_t i = 0; i < x.dim(); ++i)
    axes[size_t(i)] = i;
  return sum(x, axes);
}

Tensor mean_all(const Tensor& x) {
  return mul_scalar(sum_all(x), 1.0 / double(x.numel()));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const size_t lead = size_t(x.dim()) - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < size_t(x.dim()); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) axes.push_back(int64_t(i));
  return reshape(sum(x, axes, KeepDim::yes), shape);
}

Tensor max(const Tensor& x_in, int64_t axis, KeepDim keep) {
  check_defined("max", x_in, "x");
  check_float("max", x_in, "x");
  const int64_t a = normalize_axis(axis, x_in.dim(), "max");
  if (x_in.shape()[size_t(a)] == 0) op_error("max", "empty axis in " + x_in.desc());
  // Move the axis last, reduce, move back.
  Tensor moved = contiguous(transpose(x_in, a, -1));
  Shape rshape(moved.shape().begin(), moved.shape().end() - 1);
  Tensor values = Tensor::empty(rshape, moved.dtype(), moved.device());
  Tensor arg = Tensor::empty(rshape, DType::i64, moved.device());
  backend_for(moved.device()).max_last(moved, values, arg);
  Tensor out = values;
  if (needs_grad({&moved})) {
    const int64_t n = moved.size(-1);
    record("max", out, {moved}, [arg, n](const Tensor& g) {
      Shape full = arg.shape();
      full.push_back(n);
      Tensor gx = Tensor::empty(full, g.dtype(), g.device());
      Shape idx_shape = arg.shape();
      idx_shape.push_back(1);
      Tensor gcol = reshape(contiguous(g), idx_shape);
      backend_for(g.device()).gather_backward(gcol, reshape(arg, idx_shape), gx);
      return std::vector<Tensor>{gx};
    });
  }
  // values has x's shape without `a` in the moved order; restore the order of the rest.
  Shape kept_order = x_in.shape();
  kept_order[size_t(a)] = 1;
  Tensor result = out;
  if (a != x_in.dim() - 1) {
    Shape tmp = rshape;
    tmp.push_back(1);
    result = reshape(transpose(reshape(out, tmp), a, -1), kept_order);
  } else {
    result = reshape(out, kept_order);
  }
  if (keep == KeepDim::yes) return result;
  Shape dropped;
  for (int64_t i = 0; i < x_in.dim(); ++i)
    if (i != a) dropped.push_back(x_in.shape()[size_t(i)]);
  return reshape(result, dropped);
}

Tensor cumsum(const Tensor& x_in, int64_t axis) {
  check_defined("cumsum", x_in, "x");
  const int64_t a = normalize_axis(axis, x_in.dim(), "cumsum");
  Tensor x = contiguous(x_in);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < a; ++i)
    outer *= x.shape()[size_t(i)];
  for (int64_t i = a + 1; i < x.dim(); ++i)
    inner *= x.shape()[size_t(i)];
  const int64_t n = x.shape()[size_t(a)];
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).cumsum(x, outer, n, inner, ScanDirection::forward, out);
  if (needs_grad({&x})) {
    record("cumsum", out, {x}, [outer, n, inner](const Tensor& g_in) {
      Tensor g = contiguous(g_in);
      Tensor gx = Tensor::empty(g.shape(), g.dtype(), g.device());
      backend_for(g.device()).cumsum(g, outer, n, inner, ScanDirection::reverse, gx);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

}  // namespace vmoe
