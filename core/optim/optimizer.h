// Optimizers update a ParameterStore in place from its flat gradients. State lives in flat
// buffers shaped like the store's, on its device, so that it shards and checkpoints like the
// parameters.
#pragma once
#include <string>
#include <vector>

#include "core/optim/update_options.h"
#include "core/parameters.h"

namespace vmoe {

// One named optimizer slot buffer ("adam_m", ...) of one sharding class: [n] flat.
struct OptimizerSlot {
  std::string name;
  Sharding sharding;
  Tensor flat;
};

// Global-norm clipping folded into the update: every gradient is scaled by max_norm / norm
// where the norm exceeds max_norm. grad_norm_sq: [] f64 on the store's device (the squared
// norm over all ranks); undefined or max_norm <= 0: no clipping.
struct GradClip {
  Tensor grad_norm_sq;
  double max_norm = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update with learning rate `lr` (the schedule's value for this step), on the
  // store's device through its backend's fused update; the gradients are left as they are.
  virtual void step(ParameterStore& params, double lr, const GradClip& clip = {}) = 0;
  // Number of steps applied so far (Adam's bias correction uses it).
  virtual int64_t steps() const = 0;
  virtual void set_steps(int64_t steps) = 0;
  virtual std::vector<OptimizerSlot> slots() const = 0;
};

}  // namespace vmoe
