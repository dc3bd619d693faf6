// Global-norm clipping.
#include "core/optim/grad_clip.h"

#include <cmath>

#include "core/ops.h"

namespace vmoe {

double grad_sum_squares(const ParameterStore& params, Sharding sharding) {
  const Tensor& g = params.flat_grads(sharding);
  return g.defined() && g.numel() > 0 ? sum_squares(g) : 0.0;
}

double global_grad_norm(const ParameterStore& params) {
  double total = 0;
  for (int s = 0; s < kNumShardings; ++s)
    total += grad_sum_squares(params, Sharding(s));
  return std::sqrt(total);
}

void clip_grads_to_norm(ParameterStore& params, double norm, double max_norm) {
  if (!(max_norm > 0 && norm > max_norm)) return;
  for (int s = 0; s < kNumShardings; ++s) {
    Tensor g = params.flat_grads(Sharding(s));
    if (g.numel() > 0) scale_(g, max_norm / norm);
  }
}

double clip_grad_norm(ParameterStore& params, double max_norm) {
  const double norm = global_grad_norm(params);
  clip_grads_to_norm(params, norm, max_norm);
  return norm;
}

}  // namespace vmoe
