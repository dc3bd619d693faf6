// Hyper-parameters of the fused optimizer updates, shared by the optimizers (core/optim) and
// the backends' update kernels (core/backend.h).
#pragma once

namespace vmoe {

struct AdamWOptions {
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  // Decoupled and multiplied by the learning rate: update = -lr * (adam_step + wd * param).
  double weight_decay = 0;
  // Apply decay only where the store's decay mask is 1 (kernels), else to every parameter.
  bool decay_masked_only = true;
};

struct SgdOptions {
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0;  // decoupled, multiplied by the learning rate
  bool decay_masked_only = true;
};

}  // namespace vmoe
