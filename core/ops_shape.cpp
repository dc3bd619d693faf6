// Creation, views, copies and concatenation.
#include <numeric>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

int64_t normalize_axis(int64_t axis, int64_t rank, const char* op) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    op_error(op, "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return a;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      op_error(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor arange(int64_t n, DType dtype, Device device) {
  // The cumulative sum of (0, 1, 1, ..., 1), made on the device: no host data to copy.
  if (n < 0) op_error("arange", "n must be >= 0, got " + std::to_string(n));
  const Backend& b = backend_for(device);
  Tensor steps = Tensor::full({n + 1}, 1.0, DType::i64, device);
  b.fill(steps.slice(0, 0, 1), 0.0);
  Tensor out = Tensor::empty({n + 1}, DType::i64, device);
  b.cumsum(steps, 1, n + 1, 1, ScanDirection::forward, out);
  out = out.slice(0, 0, n);
  return dtype == DType::i64 ? out : to_dtype(out, dtype);
}

Tensor randn(const Shape& shape, RngKey key, uint64_t offset, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).random_fill(t, key, offset, Distribution::normal, 0, 0);
  return t;
}

Tensor rand_uniform(const Shape& shape, RngKey key, double lo, double hi, uint64_t offset,
                    DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).random_fill(t, key, offset, Distribution::uniform, lo, hi);
  return t;
}

Tensor contiguous(const Tensor& x) {
  check_defined("contiguous", x, "x");
  if (x.is_contiguous()) return x;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).copy(x, out);
  if (needs_grad({&x}))
    record("contiguous", out, {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape_in) {
  check_defined("reshape", x, "x");
  Shape shape = shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) op_error("reshape", "more than one -1 in " + shape_str(shape_in));
      infer = int64_t(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0)
      op_error("reshape", "cannot reshape " + x.desc() + " to " + shape_str(shape_in));
    shape[size_t(infer)] = x.numel() / known;
  }
  if (shape_numel(shape) != x.numel())
    op_error("reshape", "cannot reshape " + x.desc() + " to " + shape_str(shape_in));
  Tensor src = x.is_contiguous() ? x : contiguous(x);
  Tensor out =
      Tensor::view_of(src.storage(), shape, contiguous_strides(shape), src.offset(), src.dtype());
  if (needs_grad({&src})) {
    Shape in_shape = x.shape();
    record("reshape", out, {src},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{reshape(g, in_shape)}; });
  }
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  check_defined("permute", x, "x");
  const int64_t r = x.dim();
  if (int64_t(order.size()) != r)
    op_error("permute", "order has " + std::to_string(order.size()) + " axes for " + x.desc());
  std::vector<int64_t> inverse(size_t(r), -1);
  Shape shape(static_cast<size_t>(r)), strides(static_cast<size_t>(r));
  for (int64_t i = 0; i < r; ++i) {
    int64_t a = normalize_axis(order[size_t(i)], r, "permute");
    if (inverse[size_t(a)] >= 0) op_error("permute", "axis repeated in order");
    inverse[size_t(a)] = i;
    shape[size_t(i)] = x.shape()[size_t(a)];
    strides[size_t(i)] = x.strides()[size_t(a)];
  }
  Tensor out = Tensor::view_of(x.storage(), shape, strides, x.offset(), x.dtype());
  if (needs_grad({&x})) {
    record("permute", out, {x},
           [inverse](const Tensor& g) { return std::vector<Tensor>{permute(g, inverse)}; });
  }
  return out;
}

Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  std::vector<int64_t> order(size_t(x.dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[size_t(normalize_axis(a, x.dim(), "transpose"))],
            order[size_t(normalize_axis(b, x.dim(), "transpose"))]);
  return permute(x, order);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  check_defined("slice", x, "x");
  const int64_t d = normalize_axis(dim, x.dim(), "slice");
  const int64_t n = x.shape()[size_t(d)];
  if (start < 0 || end > n || start > end)
    op_error("slice", "range [" + std::to_string(start) + ", " + std::to_string(end) +
                          ") out of bounds for axis " + std::to_string(d) + " of " + x.desc());
  Shape shape = x.shape();
  shape[size_t(d)] = end - start;
  Tensor out = Tensor::view_of(x.storage(), shape, x.strides(),
                               x.offset() + start * x.strides()[size_t(d)], x.dtype());
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    record("slice", out, {x}, [in_shape, d, start, end](const Tensor& g) {
      Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
      Tensor window = slice(gx, d, start, end);
      copy_(window, g);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  check_defined("expand", x, "x");
  if (int64_t(shape.size()) < x.dim())
    op_error("expand", "cannot expand " + x.desc() + " to " + shape_str(shape));
  const size_t lead = shape.size() - size_t(x.dim());
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) continue;
    int64_t s = x.shape()[i - lead];
    if (s == shape[i])
      strides[i] = x.strides()[i - lead];
    else if (s != 1)
      op_error("expand", "cannot expand " + x.desc() + " to " + shape_str(shape));
  }
  Tensor out = Tensor::view_of(x.storage(), shape, strides, x.offset(), x.dtype());
  if (needs_grad({&x})) {
    Shape in_shape = x.shape();
    record("expand", out, {x},
           [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  }
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) op_error("concat", "no tensors");
  const Tensor& first = xs[0];
  const int64_t d = normalize_axis(dim, first.dim(), "concat");
  Shape shape = first.shape();
  int64_t total = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : xs) {
    check_same_device("concat", first, t);
    check_same_dtype("concat", first, t);
    if (t.dim() != first.dim())
      op_error("concat", "rank mismatch: " + first.desc() + " and " + t.desc());
    for (int64_t i = 0; i < t.dim(); ++i)
      if (i != d && t.shape()[size_t(i)] != shape[size_t(i)])
        op_error("concat", "shapes " + first.desc() + " and " + t.desc() + " differ outside axis " +
                               std::to_string(d));
    sizes.push_back(t.shape()[size_t(d)]);
    total += sizes.back();
  }
  shape[size_t(d)] = total;
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  {
    NoGrad no_grad;
    int64_t at = 0;
    for (const Tensor& t : xs) {
      Tensor window = slice(out, d, at, at + t.shape()[size_t(d)]);
      copy_(window, t);
      at += t.shape()[size_t(d)];
    }
  }
  bool any = false;
  for (const Tensor& t : xs)
    any = any || needs_grad({&t});
  if (any) {
    record("concat", out, xs, [sizes, d](const Tensor& g) { return split(g, sizes, d); });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = normalize_axis(dim, x.dim(), "split");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  if (total != x.shape()[size_t(d)])
    op_error("split", "sizes sum to " + std::to_string(total) + " but axis " + std::to_string(d) +
                          " of " + x.desc() + " has " + std::to_string(x.shape()[size_t(d)]));
  std::vector<Tensor> parts;
  int64_t at = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(x, d, at, at + s));
    at += s;
  }
  return parts;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  check_defined("to_dtype", x, "x");
  if (x.dtype() == dtype) return x;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  backend_for(x.device()).copy(x, out);
  if (needs_grad({&x}) && is_floating(dtype)) {
    DType from = x.dtype();
    record("to_dtype", out, {x},
           [from](const Tensor& g) { return std::vector<Tensor>{to_dtype(g, from)}; });
  }
  return out;
}

void copy_(Tensor& dst, const Tensor& src) {
  check_defined("copy_", dst, "dst");
  check_defined("copy_", src, "src");
  check_same_device("copy_", dst, src);
  if (dst.shape() != src.shape())
    op_error("copy_", "shape mismatch: dst " + dst.desc() + ", src " + src.desc());
  backend_for(dst.device()).copy(src, dst);
}

void fill_(Tensor& dst, double value) {
  check_defined("fill_", dst, "dst");
  backend_for(dst.device()).fill(dst, value);
}

}  // namespace vmoe
