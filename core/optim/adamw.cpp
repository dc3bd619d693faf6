// AdamW update over the flat parameter buffers.
#include "core/optim/adamw.h"

#include <cmath>

namespace vmoe {

AdamW::AdamW(const ParameterStore& params, AdamWOptions options) : options_(options) {
  for (int s = 0; s < kNumShardings; ++s) {
    const int64_t n = params.flat_values(Sharding(s)).numel();
    m_[s] = Tensor::zeros({n}, params.dtype());
    v_[s] = Tensor::zeros({n}, params.dtype());
  }
}

namespace {

template <class T>
void adamw_kernel(T* w, const T* g, T* m, T* v, const T* mask, int64_t n, double lr,
                  const AdamWOptions& o, int64_t t) {
  const double c1 = 1.0 / (1.0 - std::pow(o.b1, double(t)));
  const double c2 = 1.0 / (1.0 - std::pow(o.b2, double(t)));
  const T b1 = T(o.b1), b2 = T(o.b2), eps = T(o.eps);
#pragma omp parallel for simd if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + (T(1) - b1) * g[i];
    v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
    const T step = T(m[i] * c1) / (std::sqrt(T(v[i] * c2)) + eps);
    const T decay = o.decay_masked_only ? mask[i] : T(1);
    w[i] -= T(lr) * (step + T(o.weight_decay) * decay * w[i]);
  }
}

}  // namespace

void AdamW::step(ParameterStore& params, double lr) {
  ++steps_;
  for_each_flat_shard(params, [&]<class T>(FlatShard<T> f) {
    adamw_kernel<T>(f.values, f.grads, m_[f.shard].template data<T>(),
                    v_[f.shard].template data<T>(), f.decay, f.n, lr, options_, steps_);
  });
}

std::vector<OptimizerSlot> AdamW::slots() const {
  std::vector<OptimizerSlot> out;
  for (int s = 0; s < kNumShardings; ++s) {
    out.push_back({"adam_m", Sharding(s), m_[s]});
    out.push_back({"adam_v", Sharding(s), v_[s]});
  }
  return out;
}

}  // namespace vmoe
