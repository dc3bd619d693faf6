// SGD with (optionally Nesterov) momentum, as used for fine-tuning in PAPER.md.
#pragma once
#include "core/optim/optimizer.h"

namespace vmoe {

class Sgd final : public Optimizer {
 public:
  Sgd(const ParameterStore& params, SgdOptions options);
  void step(ParameterStore& params, double lr, const GradClip& clip = {}) override;
  int64_t steps() const override { return steps_; }
  void set_steps(int64_t steps) override { steps_ = steps; }
  std::vector<OptimizerSlot> slots() const override;

 private:
  SgdOptions options_;
  Tensor trace_[kNumShardings];  // [n] momentum buffer
  int64_t steps_ = 0;
};

}  // namespace vmoe
