// Fused neural-network ops: softmax, layer norm, cross-entropies, dropout, image patches.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

Tensor softmax_impl(const Tensor& x_in, SoftmaxKind kind, const char* name) {
  check_defined(name, x_in, "x");
  check_float_or_bf16(name, x_in, "x");
  if (x_in.dim() < 1 || x_in.size(-1) == 0)
    op_error(name, "needs a non-empty last axis, got " + x_in.desc());
  Tensor x = contiguous(x_in);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).softmax(x, y, kind);
  if (needs_grad({&x})) {
    Tensor saved = y.detach();
    record(name, y, {x}, [saved, kind](const Tensor& g) {
      Tensor gx = Tensor::empty(saved.shape(), saved.dtype(), saved.device());
      backend_for(saved.device()).softmax_backward(saved, contiguous(g), gx, kind);
      return std::vector<Tensor>{gx};
    });
  }
  return y;
}

void check_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  check_rank(op, logits, 2, "logits");
  if (labels.dtype() != DType::i32) op_error(op, "labels must be i32, got " + labels.desc());
  if (labels.dim() != 1 || labels.size(0) != logits.size(0))
    op_error(op, "labels " + labels.desc() + " do not match logits " + logits.desc());
  check_same_device(op, logits, labels);
  // Label values are checked by the kernel (core/kernel_errors.h): no host read here.
}

using XentKernel = void (*)(const Tensor&, const Tensor&, const Tensor&, const Tensor&);

Tensor xent_impl(const Tensor& logits_in, const Tensor& labels, XentKernel kernel,
                 const char* name) {
  check_defined(name, logits_in, "logits");
  check_float(name, logits_in, "logits");
  check_labels(name, logits_in, labels);
  Tensor logits = contiguous(logits_in);
  const int64_t b = logits.size(0);
  Tensor per_example = Tensor::empty({b}, logits.dtype(), logits.device());
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  kernel(logits, contiguous(labels), per_example, dlogits);
  Tensor loss;
  {
    NoGrad no_grad;
    loss = mean_all(per_example);
  }
  if (needs_grad({&logits})) {
    record(name, loss, {logits},
           [dlogits](const Tensor& g) { return std::vector<Tensor>{mul(dlogits, g)}; });
  }
  return loss;
}

}  // namespace

Tensor softmax(const Tensor& x) {
  return softmax_impl(x, SoftmaxKind::plain, "softmax");
}
Tensor log_softmax(const Tensor& x) {
  return softmax_impl(x, SoftmaxKind::log, "log_softmax");
}

Tensor layer_norm(const Tensor& x_in, const Tensor& scale, const Tensor& bias, double eps) {
  check_defined("layer_norm", x_in, "x");
  check_float_or_bf16("layer_norm", x_in, "x");
  const int64_t d = x_in.size(-1);
  // bf16 x (mixed precision) takes f32 scale/bias (master weights) and keeps its row
  // statistics in f32; otherwise everything is x's dtype.
  const bool mixed = x_in.dtype() == DType::bf16;
  const DType param_dtype = mixed ? DType::f32 : x_in.dtype();
  for (const Tensor* p : {&scale, &bias}) {
    check_defined("layer_norm", *p, "scale/bias");
    if (p->dim() != 1 || p->size(0) != d ||
        (p->dtype() != x_in.dtype() && p->dtype() != param_dtype))
      op_error("layer_norm", "scale/bias " + p->desc() + " do not match x " + x_in.desc() +
                                 (mixed ? " (expected [D] f32 or bf16)" : ""));
  }
  if (scale.dtype() != bias.dtype())
    op_error("layer_norm",
             "scale " + scale.desc() + " and bias " + bias.desc() + " differ in dtype");
  Tensor x = contiguous(x_in), s = contiguous(scale), b = contiguous(bias);
  Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mu = Tensor::empty(rows_shape, param_dtype, x.device());
  Tensor rstd = Tensor::empty(rows_shape, param_dtype, x.device());
  backend_for(x.device()).layer_norm(x, s, b, eps, y, mu, rstd);
  if (needs_grad({&x, &s, &b})) {
    record("layer_norm", y, {x, s, b}, [x, s, mu, rstd](const Tensor& g) {
      Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
      Tensor gs = Tensor::empty(s.shape(), s.dtype(), s.device());
      Tensor gb = Tensor::empty(s.shape(), s.dtype(), s.device());
      backend_for(x.device()).layer_norm_backward(x, s, mu, rstd, contiguous(g), gx, gs, gb);
      return std::vector<Tensor>{gx, gs, gb};
    });
  }
  return y;
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  return xent_impl(logits, labels, backend_for(logits.device()).softmax_xent,
                   "softmax_cross_entropy");
}

Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& labels) {
  return xent_impl(logits, labels, backend_for(logits.device()).sigmoid_xent,
                   "sigmoid_cross_entropy");
}

Tensor dropout(const Tensor& x, double rate, RngKey key, uint64_t offset) {
  check_defined("dropout", x, "x");
  if (!(rate >= 0 && rate < 1))
    op_error("dropout", "rate must be in [0, 1), got " + std::to_string(rate));
  if (rate == 0) return x;
  Tensor mask = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).dropout_mask(mask, rate, key, offset);
  return mul(x, mask);
}

Tensor image_to_patches(const Tensor& images_in, int64_t p) {
  check_defined("image_to_patches", images_in, "images");
  check_rank("image_to_patches", images_in, 4, "images [B, H, W, C]");
  check_float_or_bf16("image_to_patches", images_in, "images");
  const int64_t b = images_in.size(0), h = images_in.size(1), w = images_in.size(2),
                c = images_in.size(3);
  if (p <= 0 || h % p != 0 || w % p != 0)
    op_error("image_to_patches",
             "patch size " + std::to_string(p) + " does not tile images " + images_in.desc());
  Tensor images = contiguous(images_in);
  Tensor out = Tensor::empty({b, (h / p) * (w / p), p * p * c}, images.dtype(), images.device());
  backend_for(images.device()).patches(images, p, out, PatchDirection::to_patches);
  if (needs_grad({&images})) {
    Shape ishape = images.shape();
    record("image_to_patches", out, {images}, [ishape, p](const Tensor& g) {
      Tensor gi = Tensor::empty(ishape, g.dtype(), g.device());
      backend_for(g.device()).patches(gi, p, contiguous(g), PatchDirection::to_images);
      return std::vector<Tensor>{gi};
    });
  }
  return out;
}

}  // namespace vmoe
