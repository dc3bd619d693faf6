// Gradient norms on the device.
#include "core/optim/grad_clip.h"

#include <cmath>

#include "core/ops.h"

namespace vmoe {

Tensor grad_norm_squared(const ParameterStore& params, Sharding sharding) {
  const Tensor& g = params.flat_grads(sharding);
  return sum_squares(g);
}

Tensor grad_norm_squared(const ParameterStore& params) {
  Tensor total = grad_norm_squared(params, Sharding(0));
  for (int s = 1; s < kNumShardings; ++s)
    total = total + grad_norm_squared(params, Sharding(s));
  return total;
}

double global_grad_norm(const ParameterStore& params) {
  return std::sqrt(grad_norm_squared(params).cpu().item());
}

}  // namespace vmoe
