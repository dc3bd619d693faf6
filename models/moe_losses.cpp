// MoE auxiliary losses.
#include "models/moe_losses.h"

namespace vmoe {

Tensor cv_squared(const Tensor& v) {
  Tensor m = mean_all(v);
  return mean_all(square(v - m)) / square(m);
}

Tensor importance_loss(const Tensor& p_clean) {
  return cv_squared(sum(p_clean, {0}));
}

Tensor load_loss(const Tensor& logits, const Tensor& noisy_logits, const Tensor& kth,
                 double sigma) {
  Tensor threshold = gather(noisy_logits, kth);  // [S, 1]
  // 1 - Phi((thr - l) / sigma) = Phi((l - thr) / sigma)
  Tensor prob = normal_cdf((logits - threshold) * (1.0 / sigma));  // [S, E]
  return cv_squared(mean(prob, {0}));
}

Tensor gshard_loss(const Tensor& p, const Tensor& top1_fraction) {
  const double e = double(p.size(1));
  return mean_all(top1_fraction * mean(p, {0})) * (e * e);
}

}  // namespace vmoe
