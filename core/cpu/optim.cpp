// Fused optimizer updates (AdamW, SGD with momentum) with optional global-norm clipping
// folded in: the gradient is scaled on the fly, the gradient buffer is left as it is.
#include <cmath>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

namespace {

// The factor global-norm clipping applies to every gradient: max_norm / norm when the norm
// exceeds max_norm, else 1 (no scaling at all, so that unclipped steps are bit-identical).
template <class T>
bool clip_factor(const UpdateArgs& a, T& factor) {
  if (!a.grad_norm_sq.defined() || !(a.max_norm > 0)) return false;
  const double norm = std::sqrt(a.grad_norm_sq.device_data<double>()[0]);
  if (!(norm > a.max_norm)) return false;
  factor = T(a.max_norm / norm);
  return true;
}

template <class T>
void adamw(const UpdateArgs& a, const AdamWOptions& o) {
  T* w = a.values.device_data<T>();
  const T* g = a.grads.device_data<T>();
  T* m = a.slot_a.device_data<T>();
  T* v = a.slot_b.device_data<T>();
  const uint8_t* mask = a.decay_mask.device_data<uint8_t>();
  const int64_t n = a.values.numel();
  const double c1 = 1.0 / (1.0 - std::pow(o.b1, double(a.step)));
  const double c2 = 1.0 / (1.0 - std::pow(o.b2, double(a.step)));
  const T b1 = T(o.b1), b2 = T(o.b2), eps = T(o.eps), lr = T(a.lr), wd = T(o.weight_decay);
  T factor = T(1);
  const bool clip = clip_factor(a, factor);
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = clip ? g[i] * factor : g[i];
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    const T step = T(m[i] * c1) / (std::sqrt(T(v[i] * c2)) + eps);
    const T decay = o.decay_masked_only ? T(mask[i]) : T(1);
    w[i] -= lr * (step + wd * decay * w[i]);
  }
}

template <class T>
void sgd(const UpdateArgs& a, const SgdOptions& o) {
  T* w = a.values.device_data<T>();
  const T* g = a.grads.device_data<T>();
  T* trace = a.slot_a.device_data<T>();
  const uint8_t* mask = a.decay_mask.device_data<uint8_t>();
  const int64_t n = a.values.numel();
  const T mom = T(o.momentum), lr = T(a.lr), wd = T(o.weight_decay);
  T factor = T(1);
  const bool clip = clip_factor(a, factor);
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = clip ? g[i] * factor : g[i];
    trace[i] = gi + mom * trace[i];
    const T step = o.nesterov ? gi + mom * trace[i] : trace[i];
    const T decay = o.decay_masked_only ? T(mask[i]) : T(1);
    w[i] -= lr * (step + wd * decay * w[i]);
  }
}

}  // namespace

void adamw_update(const UpdateArgs& args, const AdamWOptions& options) {
  dispatch_float(args.values.dtype(), "adamw_update", [&]<class T>(T) { adamw<T>(args, options); });
}

void sgd_update(const UpdateArgs& args, const SgdOptions& options) {
  dispatch_float(args.values.dtype(), "sgd_update", [&]<class T>(T) { sgd<T>(args, options); });
}

}  // namespace vmoe::cpu
