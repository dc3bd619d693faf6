// AdamW update over the flat parameter buffers, through the backend's fused kernel.
#include "core/optim/adamw.h"

#include "core/backend.h"

namespace vmoe {

AdamW::AdamW(const ParameterStore& params, AdamWOptions options) : options_(options) {
  for (int s = 0; s < kNumShardings; ++s) {
    const Tensor& w = params.flat_values(Sharding(s));
    m_[s] = Tensor::zeros({w.numel()}, w.dtype(), w.device());
    v_[s] = Tensor::zeros({w.numel()}, w.dtype(), w.device());
  }
}

void AdamW::step(ParameterStore& params, double lr, const GradClip& clip) {
  ++steps_;
  for (int s = 0; s < kNumShardings; ++s) {
    const Sharding sh = Sharding(s);
    const Tensor& w = params.flat_values(sh);
    if (w.numel() == 0) continue;
    const Backend& backend = backend_for(w.device());
    require_entry(backend, Entry::adamw_update, w.dtype());
    backend.adamw_update({w, params.flat_grads(sh), params.flat_decay_mask(sh), m_[s], v_[s],
                          clip.grad_norm_sq, clip.max_norm, lr, steps_},
                         options_);
  }
}

std::vector<OptimizerSlot> AdamW::slots() const {
  std::vector<OptimizerSlot> out;
  for (int s = 0; s < kNumShardings; ++s) {
    out.push_back({"adam_m", Sharding(s), m_[s]});
    out.push_back({"adam_v", Sharding(s), v_[s]});
  }
  return out;
}

}  // namespace vmoe
