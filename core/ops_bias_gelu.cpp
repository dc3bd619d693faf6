// Fused bias + GELU: y = gelu(x + bias) in one pass over x, the MLP's first layer after its
// GEMM. Backward keeps only x (the sum is recomputed) and sums the bias gradient as the
// composed add would. Without the backend entries it composes add and gelu.
#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// x [G, R, F] contiguous, bias [G, F] -> y [G, R, F] through the backend's fused kernels.
Tensor fused_bias_gelu(const Tensor& x, const Tensor& bias) {
  const Backend& backend = backend_for(x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend.bias_gelu(x, bias, y);
  if (needs_grad({&x, &bias})) {
    record("bias_gelu", y, {x, bias}, [x, bias](const Tensor& g) {
      Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());  // [G, R, F]
      backend_for(x.device()).bias_gelu_backward(x.detach(), bias.detach(), contiguous(g), gx);
      // [G, R, F] -> [G, 1, F] -> [G, F]: the composed add's reduction, so the bits agree.
      Tensor gbias = sum_to(gx, {x.size(0), 1, x.size(2)}).reshape(bias.shape());
      return std::vector<Tensor>{gx, gbias};
    });
  }
  return y;
}

}  // namespace

Tensor bias_gelu(const Tensor& x, const Tensor& bias) {
  const char* op = "bias_gelu";
  check_defined(op, x, "x");
  check_defined(op, bias, "bias");
  check_same_device(op, x, bias);
  check_same_dtype(op, x, bias);
  check_float_or_bf16(op, x, "x");
  const bool shared = bias.dim() == 1;  // one bias row for every leading index
  if (x.dim() < 1 || (bias.dim() != 1 && bias.dim() != 2) || bias.size(-1) != x.size(-1) ||
      (!shared && (x.dim() < 2 || x.size(0) != bias.size(0))))
    op_error(op, "bias " + bias.desc() + " must be [F] or [G, F] for x " + x.desc() +
                     " ([..., F] or [G, ..., F])");
  const int64_t f = x.size(-1), g = shared ? 1 : bias.size(0);
  const int64_t rows = f == 0 || x.numel() == 0 ? 0 : x.numel() / (g * f);
  const Tensor x3 = reshape(contiguous(x), {g, rows, f});
  const Tensor b2 = reshape(contiguous(bias), {g, f});
  const Backend& backend = backend_for(x.device());
  const bool fused = backend_supports(backend, Entry::bias_gelu, x.dtype()) &&
                     backend_supports(backend, Entry::bias_gelu_backward, x.dtype());
  Tensor y = fused ? fused_bias_gelu(x3, b2) : gelu(x3 + reshape(b2, {g, 1, f}));
  return reshape(y, x.shape());
}

}  // namespace vmoe
