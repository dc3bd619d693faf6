// Auxiliary losses of one routing group (PAPER.md "Auxiliary losses"), and their sums over the
// routing groups of a batch computed with a fixed number of ops.
#pragma once
#include <cstdint>

#include "core/ops.h"

namespace vmoe {

// var(v) / mean(v)^2 of v [E] with the variance of centred values: finite with a finite
// gradient when v is perfectly balanced (unlike (std / mean)^2, NaN-gradient upstream).
Tensor cv_squared(const Tensor& v);

// p_clean [S, E] -> cv^2 of the importance sum_s p_clean[s, e].
Tensor importance_loss(const Tensor& p_clean);

// logits, noisy_logits [S, E]; kth [S, 1] the index of each token's k-th choice; sigma the
// noise std. P[s, e] = 1 - Phi((noisy_logits[s, kth] - logits[s, e]) / sigma) is the chance
// that expert e stays in token s's top k under fresh noise -> cv^2 of the load mean_s P.
Tensor load_loss(const Tensor& logits, const Tensor& noisy_logits, const Tensor& kth, double sigma);

// GShard: E^2 * mean_e(top1_fraction_e * mean_s p[s, e]); top1_fraction [E] is a constant.
Tensor gshard_loss(const Tensor& p, const Tensor& top1_fraction);

// cv_squared of each row: v [G, E] -> [G].
Tensor cv_squared_rows(const Tensor& v);

// Over the routing groups of [N, E] inputs: consecutive groups of `group_size` tokens, the last
// one smaller when group_size does not divide N. Each returns the sum over the groups of the
// single-group loss above (a scalar): one fused op where the backend has it (core/ops.h,
// fused_importance_loss and fused_load_loss), else the _composed form, one [G, S, E] batch of
// the full groups plus the last partial group on its own, so the op count does not grow with
// the groups. Both give the same value and gradients, bit for bit.
Tensor grouped_importance_loss(const Tensor& p_clean, int64_t group_size);
Tensor grouped_importance_loss_composed(const Tensor& p_clean, int64_t group_size);
// kth [N, 1] as in load_loss.
Tensor grouped_load_loss(const Tensor& logits, const Tensor& noisy_logits, const Tensor& kth,
                         double sigma, int64_t group_size);
Tensor grouped_load_loss_composed(const Tensor& logits, const Tensor& noisy_logits,
                                  const Tensor& kth, double sigma, int64_t group_size);
// first i64 [N]: each token's first choice, whose per-group fractions are the constants.
Tensor grouped_gshard_loss(const Tensor& p, const Tensor& first, int64_t group_size);

}  // namespace vmoe
