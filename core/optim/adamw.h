// AdamW exactly as PAPER.md: bias-corrected Adam step plus decoupled weight decay, both
// scaled by the learning rate.
#pragma once
#include "core/optim/optimizer.h"

namespace vmoe {

class AdamW final : public Optimizer {
 public:
  AdamW(const ParameterStore& params, AdamWOptions options);
  void step(ParameterStore& params, double lr, const GradClip& clip = {}) override;
  int64_t steps() const override { return steps_; }
  void set_steps(int64_t steps) override { steps_ = steps; }
  std::vector<OptimizerSlot> slots() const override;

 private:
  AdamWOptions options_;
  Tensor m_[kNumShardings], v_[kNumShardings];  // [n] first / second moments
  int64_t steps_ = 0;
};

}  // namespace vmoe
