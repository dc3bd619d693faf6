// Gradient norms over the flat gradient buffers of a ParameterStore, computed on its device.
// Clipping itself is folded into the optimizers' fused updates (GradClip in optimizer.h).
#pragma once
#include "core/parameters.h"

namespace vmoe {

// [] f64 on the store's device: squared L2 norm of one sharding class's (local) gradients.
Tensor grad_norm_squared(const ParameterStore& params, Sharding sharding);
// [] f64 on the store's device: squared global L2 norm of a single-process store.
Tensor grad_norm_squared(const ParameterStore& params);
// The global norm read back to the host (one host read): for tests and tools, not the step.
double global_grad_norm(const ParameterStore& params);

}  // namespace vmoe
