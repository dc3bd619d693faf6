// SGD-momentum update over the flat parameter buffers (optax.sgd semantics: the trace is
// g + momentum * trace, the step is -lr * trace, or -lr * (g + momentum * trace) for Nesterov).
#include "core/optim/sgd.h"

namespace vmoe {

Sgd::Sgd(const ParameterStore& params, SgdOptions options) : options_(options) {
  for (int s = 0; s < kNumShardings; ++s)
    trace_[s] = Tensor::zeros({params.flat_values(Sharding(s)).numel()}, params.dtype());
}

namespace {

template <class T>
void sgd_kernel(T* w, const T* g, T* trace, const T* mask, int64_t n, double lr,
                const SgdOptions& o) {
  const T mom = T(o.momentum);
#pragma omp parallel for simd if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    trace[i] = g[i] + mom * trace[i];
    const T step = o.nesterov ? g[i] + mom * trace[i] : trace[i];
    const T decay = o.decay_masked_only ? mask[i] : T(1);
    w[i] -= T(lr) * (step + T(o.weight_decay) * decay * w[i]);
  }
}

}  // namespace

void Sgd::step(ParameterStore& params, double lr) {
  ++steps_;
  for_each_flat_shard(params, [&]<class T>(FlatShard<T> f) {
    sgd_kernel<T>(f.values, f.grads, trace_[f.shard].template data<T>(), f.decay, f.n, lr,
                  options_);
  });
}

std::vector<OptimizerSlot> Sgd::slots() const {
  std::vector<OptimizerSlot> out;
  for (int s = 0; s < kNumShardings; ++s)
    out.push_back({"momentum", Sharding(s), trace_[s]});
  return out;
}

}  // namespace vmoe
