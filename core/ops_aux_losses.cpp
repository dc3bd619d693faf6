// The MoE auxiliary losses over routing groups as single ops: one pass over [N, E] each way
// instead of a dozen elementwise ops, reductions and broadcast copies per loss. The backend
// kernels keep each group's row of column statistics [G, E] for backward.
#include <string>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

int64_t group_count(const char* op, const Tensor& x, int64_t group_size) {
  if (group_size <= 0) op_error(op, "group_size must be > 0, got " + std::to_string(group_size));
  check_rank(op, x, 2, "x");
  if (x.size(0) == 0 || x.size(1) == 0)
    op_error(op, "expects [N, E] with N, E > 0, got " + x.desc());
  return (x.size(0) + group_size - 1) / group_size;
}

}  // namespace

bool aux_losses_are_fused(Device device, DType dtype) {
  const Backend& b = backend_for(device);
  for (Entry e : {Entry::importance_loss, Entry::importance_loss_backward, Entry::load_loss,
                  Entry::load_loss_backward})
    if (!backend_supports(b, e, dtype)) return false;
  return true;
}

Tensor fused_importance_loss(const Tensor& p_in, int64_t group_size) {
  const char* op = "fused_importance_loss";
  check_defined(op, p_in, "p");
  const int64_t groups = group_count(op, p_in, group_size);
  const Backend& backend = backend_for(p_in.device());
  require_entry(backend, Entry::importance_loss, p_in.dtype());
  const Tensor p = contiguous(p_in);
  Tensor sums = Tensor::empty({groups, p.size(1)}, p.dtype(), p.device());
  Tensor loss = Tensor::empty({}, p.dtype(), p.device());
  backend.importance_loss(p, group_size, loss, sums);
  if (needs_grad({&p})) {
    // Backward needs the sums alone (sums' dtype and device are p's).
    record(op, loss, {p}, [shape = p.shape(), sums, group_size](const Tensor& g) {
      Tensor gp = Tensor::empty(shape, sums.dtype(), sums.device());
      backend_for(sums.device()).importance_loss_backward(sums, group_size, contiguous(g), gp);
      return std::vector<Tensor>{gp};
    });
  }
  return loss;
}

Tensor fused_load_loss(const Tensor& logits_in, const Tensor& noisy_in, const Tensor& kth_in,
                       double sigma, int64_t group_size) {
  const char* op = "fused_load_loss";
  check_defined(op, logits_in, "logits");
  check_defined(op, noisy_in, "noisy_logits");
  check_defined(op, kth_in, "kth");
  const int64_t groups = group_count(op, logits_in, group_size);
  check_same_device(op, logits_in, noisy_in);
  check_same_device(op, logits_in, kth_in);
  check_same_dtype(op, logits_in, noisy_in);
  if (noisy_in.shape() != logits_in.shape())
    op_error(op, "noisy_logits " + noisy_in.desc() + " must have the shape of logits " +
                     logits_in.desc());
  if (kth_in.dtype() != DType::i64 || kth_in.numel() != logits_in.size(0))
    op_error(op, "kth " + kth_in.desc() + " must be i64 with one entry per row of logits " +
                     logits_in.desc());
  if (!(sigma > 0)) op_error(op, "sigma must be > 0, got " + std::to_string(sigma));
  const Backend& backend = backend_for(logits_in.device());
  require_entry(backend, Entry::load_loss, logits_in.dtype());
  const Tensor logits = contiguous(logits_in), noisy = contiguous(noisy_in);
  const Tensor kth = contiguous(kth_in).reshape({logits.size(0)});
  Tensor means = Tensor::empty({groups, logits.size(1)}, logits.dtype(), logits.device());
  Tensor loss = Tensor::empty({}, logits.dtype(), logits.device());
  backend.load_loss(logits, noisy, kth, sigma, group_size, loss, means);
  if (needs_grad({&logits, &noisy})) {
    record(op, loss, {logits, noisy},
           [logits, noisy, kth, sigma, group_size, means](const Tensor& g) {
             Tensor gl = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
             Tensor gn = Tensor::empty(noisy.shape(), noisy.dtype(), noisy.device());
             backend_for(logits.device())
                 .load_loss_backward(logits.detach(), noisy.detach(), kth, sigma, group_size, means,
                                     contiguous(g), gl, gn);
             return std::vector<Tensor>{logits.requires_grad() ? gl : Tensor(),
                                        noisy.requires_grad() ? gn : Tensor()};
           });
  }
  return loss;
}

}  // namespace vmoe
