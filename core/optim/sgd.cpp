// SGD-momentum update over the flat parameter buffers (optax.sgd semantics: the trace is
// g + momentum * trace, the step is -lr * trace, or -lr * (g + momentum * trace) for Nesterov),
// through the backend's fused kernel.
#include "core/optim/sgd.h"

#include "core/backend.h"

namespace vmoe {

Sgd::Sgd(const ParameterStore& params, SgdOptions options) : options_(options) {
  for (int s = 0; s < kNumShardings; ++s) {
    const Tensor& w = params.flat_values(Sharding(s));
    trace_[s] = Tensor::zeros({w.numel()}, w.dtype(), w.device());
  }
}

void Sgd::step(ParameterStore& params, double lr, const GradClip& clip) {
  ++steps_;
  for (int s = 0; s < kNumShardings; ++s) {
    const Sharding sh = Sharding(s);
    const Tensor& w = params.flat_values(sh);
    if (w.numel() == 0) continue;
    const Backend& backend = backend_for(w.device());
    require_entry(backend, Entry::sgd_update, w.dtype());
    backend.sgd_update({w, params.flat_grads(sh), params.flat_decay_mask(sh), trace_[s], Tensor(),
                        clip.grad_norm_sq, clip.max_norm, lr, steps_},
                       options_);
  }
}

std::vector<OptimizerSlot> Sgd::slots() const {
  std::vector<OptimizerSlot> out;
  for (int s = 0; s < kNumShardings; ++s)
    out.push_back({"momentum", Sharding(s), trace_[s]});
  return out;
}

}  // namespace vmoe
