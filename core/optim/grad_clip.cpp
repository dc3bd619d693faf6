// Global-norm clipping.
#include "core/optim/grad_clip.h"

#include <cmath>

#include "core/ops.h"

namespace vmoe {

double global_grad_norm(const ParameterStore& params) {
  double total = 0;
  for (int s = 0; s < kNumShardings; ++s) {
    const Tensor& g = params.flat_grads(Sharding(s));
    if (g.defined() && g.numel() > 0) total += sum_squares(g);
  }
  return std::sqrt(total);
}

double clip_grad_norm(ParameterStore& params, double max_norm) {
  const double norm = global_grad_norm(params);
  if (max_norm > 0 && norm > max_norm) {
    for (int s = 0; s < kNumShardings; ++s) {
      Tensor g = params.flat_grads(Sharding(s));
      if (g.numel() > 0) scale_(g, max_norm / norm);
    }
  }
  return norm;
}

}  // namespace vmoe
