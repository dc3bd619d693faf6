// The bodies of the CUDA backend's fused optimizer updates (AdamW, SGD with momentum), as
// __host__ __device__ functions of a thread's position in the grid, written as the CPU backend's
// (core/cpu/optim.cpp) expression for expression. Global-norm clipping reads the squared norm
// ([] f64) where it lies: every thread of the kernel reads it from device memory, so the host
// never waits for the gradient-norm reduction. Gradients are not modified. f32 and f64 (master
// weights and optimizer state are never bf16).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/cuda/kernel_bodies.h"  // GridPos, for_grid_stride

namespace vmoe::cuda {

// The scalars of one AdamW update, in the update's type (as the CPU backend rounds them), and
// the bias corrections c1 = 1 / (1 - b1^step), c2 = 1 / (1 - b2^step) in double.
template <class T>
struct AdamWScalars {
  T b1, b2, eps, lr, weight_decay;
  double c1, c2;
  bool decay_masked_only;
};

template <class T>
struct SgdScalars {
  T momentum, lr, weight_decay;
  bool nesterov, decay_masked_only;
};

// Whether global-norm clipping scales the gradients, and by what: max_norm / norm when
// grad_norm_sq is given, max_norm > 0 and norm = sqrt(*grad_norm_sq) > max_norm (no scaling
// otherwise, so that unclipped steps are bit-identical to unclipped updates).
template <class T>
VMOE_HD inline bool clip_factor(const double* grad_norm_sq, double max_norm, T& factor) {
  if (grad_norm_sq == nullptr || !(max_norm > 0)) return false;
  const double norm = std::sqrt(grad_norm_sq[0]);
  if (!(norm > max_norm)) return false;
  factor = T(max_norm / norm);
  return true;
}

// w, g, m, v, mask [n] (u8: 1 = decayed); mask may be null when !decay_masked_only.
template <class T>
VMOE_HD inline void adamw_body(const GridPos& p, T* w, const T* g, T* m, T* v, const uint8_t* mask,
                               int64_t n, const AdamWScalars<T>& s, const double* grad_norm_sq,
                               double max_norm) {
  T factor = T(1);
  const bool clip = clip_factor(grad_norm_sq, max_norm, factor);
  const T b1 = s.b1, b2 = s.b2, eps = s.eps, lr = s.lr, wd = s.weight_decay;
  const double c1 = s.c1, c2 = s.c2;
  for_grid_stride(p, n, [&](int64_t i) {
    const T gi = clip ? g[i] * factor : g[i];
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    const T step = T(m[i] * c1) / (std::sqrt(T(v[i] * c2)) + eps);
    const T decay = s.decay_masked_only ? T(mask[i]) : T(1);
    w[i] -= lr * (step + wd * decay * w[i]);
  });
}

// w, g, trace, mask [n] (u8); mask may be null when !decay_masked_only.
template <class T>
VMOE_HD inline void sgd_body(const GridPos& p, T* w, const T* g, T* trace, const uint8_t* mask,
                             int64_t n, const SgdScalars<T>& s, const double* grad_norm_sq,
                             double max_norm) {
  T factor = T(1);
  const bool clip = clip_factor(grad_norm_sq, max_norm, factor);
  const T mom = s.momentum, lr = s.lr, wd = s.weight_decay;
  for_grid_stride(p, n, [&](int64_t i) {
    const T gi = clip ? g[i] * factor : g[i];
    trace[i] = gi + mom * trace[i];
    const T step = s.nesterov ? gi + mom * trace[i] : trace[i];
    const T decay = s.decay_masked_only ? T(mask[i]) : T(1);
    w[i] -= lr * (step + wd * decay * w[i]);
  });
}

}  // namespace vmoe::cuda
