// Elementwise ops: broadcasting binary arithmetic, unary functions, in-place updates.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// A stride-0 view of x broadcast to `shape` (not recorded; the op records itself).
Tensor broadcast_view(const Tensor& x, const Shape& shape) {
  const size_t lead = shape.size() - size_t(x.dim());
  Shape strides(shape.size(), 0);
  for (size_t i = lead; i < shape.size(); ++i)
    strides[i] = x.shape()[i - lead] == 1 && shape[i] != 1 ? 0 : x.strides()[i - lead];
  return Tensor::view_of(x.storage(), shape, strides, x.offset(), x.dtype());
}

Tensor binary_op(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_defined(name, a, "a");
  check_defined(name, b, "b");
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  check_float_or_bf16(name, a, "a");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend_for(a.device()).binary(op, broadcast_view(a, shape), broadcast_view(b, shape), out);
  if (needs_grad({&a, &b})) {
    record(name, out, {a, b}, [op, a, b](const Tensor& g) {
      Tensor ga, gb;
      const bool need_a = a.requires_grad(), need_b = b.requires_grad();
      switch (op) {
        case BinaryOp::add:
          if (need_a) ga = sum_to(g, a.shape());
          if (need_b) gb = sum_to(g, b.shape());
          break;
        case BinaryOp::sub:
          if (need_a) ga = sum_to(g, a.shape());
          if (need_b) gb = neg(sum_to(g, b.shape()));
          break;
        case BinaryOp::mul:
          if (need_a) ga = sum_to(mul(g, b), a.shape());
          if (need_b) gb = sum_to(mul(g, a), b.shape());
          break;
        case BinaryOp::div:
          if (need_a) ga = sum_to(div(g, b), a.shape());
          if (need_b) gb = sum_to(neg(div(mul(g, a), mul(b, b))), b.shape());
          break;
        case BinaryOp::equal:  // piecewise constant: no gradient (equal() never records)
          break;
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor unary_op(UnaryOp op, const char* name, const Tensor& x_in) {
  check_defined(name, x_in, "x");
  check_float_or_bf16(name, x_in, "x");
  Tensor x = contiguous(x_in);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(op, x, out);
  if (needs_grad({&x})) {
    Tensor y = out.detach();
    record(name, out, {x}, [op, x, y](const Tensor& g_in) {
      Tensor g = contiguous(g_in);
      Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
      backend_for(x.device()).unary_backward(op, x.detach(), y, g, gx);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

Tensor scalar_like(const Tensor& x, double s) {
  return Tensor::full({}, s, x.dtype(), x.device());
}

}  // namespace

Tensor equal(const Tensor& a, const Tensor& b) {
  NoGrad no_grad;
  return binary_op(BinaryOp::equal, "equal", a.detach(), b.detach());
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::add, "add", a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::sub, "sub", a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::mul, "mul", a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::div, "div", a, b);
}
Tensor add_scalar(const Tensor& a, double s) {
  return add(a, scalar_like(a, s));
}
Tensor mul_scalar(const Tensor& a, double s) {
  return mul(a, scalar_like(a, s));
}

Tensor neg(const Tensor& x) {
  return unary_op(UnaryOp::neg, "neg", x);
}
Tensor exp(const Tensor& x) {
  return unary_op(UnaryOp::exp, "exp", x);
}
Tensor log(const Tensor& x) {
  return unary_op(UnaryOp::log, "log", x);
}
Tensor tanh(const Tensor& x) {
  return unary_op(UnaryOp::tanh, "tanh", x);
}
Tensor sigmoid(const Tensor& x) {
  return unary_op(UnaryOp::sigmoid, "sigmoid", x);
}
Tensor relu(const Tensor& x) {
  return unary_op(UnaryOp::relu, "relu", x);
}
Tensor sqrt(const Tensor& x) {
  return unary_op(UnaryOp::sqrt, "sqrt", x);
}
Tensor square(const Tensor& x) {
  return unary_op(UnaryOp::square, "square", x);
}
Tensor gelu(const Tensor& x) {
  return unary_op(UnaryOp::gelu, "gelu", x);
}
Tensor normal_cdf(const Tensor& x) {
  return unary_op(UnaryOp::normal_cdf, "normal_cdf", x);
}

void add_(Tensor& dst, const Tensor& src, double alpha) {
  check_defined("add_", dst, "dst");
  check_defined("add_", src, "src");
  check_same_device("add_", dst, src);
  check_same_dtype("add_", dst, src);
  if (dst.shape() != src.shape())
    op_error("add_", "shape mismatch: dst " + dst.desc() + ", src " + src.desc());
  backend_for(dst.device()).add_scaled(dst, src, alpha);
}

void scale_(Tensor& dst, double s) {
  check_defined("scale_", dst, "dst");
  backend_for(dst.device()).scale(dst, s);
}

Tensor sum_squares(const Tensor& x) {
  check_defined("sum_squares", x, "x");
  Tensor out = Tensor::zeros({}, DType::f64, x.device());
  backend_for(x.device()).sum_squares(contiguous(x), out);
  return out;
}

}  // namespace vmoe
