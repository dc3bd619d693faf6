// MoE auxiliary losses.
#include "models/moe_losses.h"

#include <stdexcept>
#include <string>
#include <vector>

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

Tensor cv_squared_rows(const Tensor& v) {
  // Means kept as [G, 1] so that they broadcast over each row.
  Tensor m = mean(v, {1}, KeepDim::yes);
  return (mean(square(v - m), {1}, KeepDim::yes) / square(m)).reshape({v.size(0)});
}

namespace {

// x [N, E] -> views [G, S, E] of its full groups and [1, r, E] of the last partial group (each
// present only when non-empty).
std::vector<Tensor> group_batches(const Tensor& x, int64_t group_size, const char* op) {
  if (group_size <= 0)
    throw std::invalid_argument(std::string(op) + ": group_size must be > 0, got " +
                                std::to_string(group_size));
  if (x.dim() != 2)
    throw std::invalid_argument(std::string(op) + ": expects [N, E], got " + x.desc());
  const int64_t n = x.size(0), e = x.size(1), full = n / group_size, cut = full * group_size;
  std::vector<Tensor> out;
  if (full > 0) out.push_back((cut == n ? x : x.slice(0, 0, cut)).reshape({full, group_size, e}));
  if (cut < n) out.push_back(x.slice(0, cut, n).reshape({1, n - cut, e}));
  return out;
}

Tensor add_defined(const Tensor& a, const Tensor& b) {
  return a.defined() ? a + b : b;
}

}  // namespace

Tensor grouped_importance_loss_composed(const Tensor& p_clean, int64_t group_size) {
  Tensor total;
  for (const Tensor& p : group_batches(p_clean, group_size, "grouped_importance_loss"))
    total = add_defined(total, sum_all(cv_squared_rows(sum(p, {1}))));
  return total;
}

Tensor grouped_load_loss_composed(const Tensor& logits, const Tensor& noisy_logits,
                                  const Tensor& kth, double sigma, int64_t group_size) {
  // Per token, so all N tokens at once; only the means are per group.
  Tensor threshold = gather(noisy_logits, kth);                    // [N, 1]
  Tensor prob = normal_cdf((logits - threshold) * (1.0 / sigma));  // [N, E]
  Tensor total;
  for (const Tensor& p : group_batches(prob, group_size, "grouped_load_loss"))
    total = add_defined(total, sum_all(cv_squared_rows(mean(p, {1}))));
  return total;
}

Tensor grouped_importance_loss(const Tensor& p_clean, int64_t group_size) {
  group_batches(p_clean, group_size, "grouped_importance_loss");  // the argument checks
  if (aux_losses_are_fused(p_clean.device(), p_clean.dtype()))
    return fused_importance_loss(p_clean, group_size);
  return grouped_importance_loss_composed(p_clean, group_size);
}

Tensor grouped_load_loss(const Tensor& logits, const Tensor& noisy_logits, const Tensor& kth,
                         double sigma, int64_t group_size) {
  group_batches(logits, group_size, "grouped_load_loss");
  if (aux_losses_are_fused(logits.device(), logits.dtype()) && sigma > 0 &&
      noisy_logits.dtype() == logits.dtype() && kth.dtype() == DType::i64)
    return fused_load_loss(logits, noisy_logits, kth, sigma, group_size);
  return grouped_load_loss_composed(logits, noisy_logits, kth, sigma, group_size);
}

Tensor grouped_gshard_loss(const Tensor& p, const Tensor& first, int64_t group_size) {
  const int64_t e = p.size(1);
  const std::vector<Tensor> ps = group_batches(p, group_size, "grouped_gshard_loss");
  const std::vector<Tensor> ones =
      group_batches(one_hot(first, e, p.dtype()), group_size, "grouped_gshard_loss");
  Tensor total;
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor frac = mean(ones[i], {1});  // [G, E] each group's top-1 fractions (a constant)
    total = add_defined(total, sum_all(mean(frac * mean(ps[i], {1}), {1}) * double(e * e)));
  }
  return total;
}

}  // namespace vmoe
