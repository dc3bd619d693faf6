// Optimizers update a ParameterStore in place from its flat gradients. State lives in flat
// buffers shaped like the store's, so that it shards and checkpoints like the parameters.
#pragma once
#include <string>
#include <vector>

#include "core/parameters.h"

namespace vmoe {

// One named optimizer slot buffer ("adam_m", ...) of one sharding class: [n] flat.
struct OptimizerSlot {
  std::string name;
  Sharding sharding;
  Tensor flat;
};

// The flat buffers of one sharding class, typed: what an update kernel works on.
template <class T>
struct FlatShard {
  int shard;       // Sharding as an index
  T* values;       // [n]
  const T* grads;  // [n]
  const T* decay;  // [n] 1 where weight decay applies
  int64_t n;
};

// Calls fn(FlatShard<T>) for every non-empty sharding class, T = float or double (the store's
// dtype).
template <class Fn>
void for_each_flat_shard(ParameterStore& params, Fn&& fn) {
  for (int s = 0; s < kNumShardings; ++s) {
    const Sharding sh = Sharding(s);
    const Tensor& w = params.flat_values(sh);
    if (w.numel() == 0) continue;
    auto typed = [&](auto zero) {
      using T = decltype(zero);
      fn(FlatShard<T>{s, w.data<T>(), params.flat_grads(sh).data<T>(),
                      params.flat_decay_mask(sh).data<T>(), w.numel()});
    };
    if (w.dtype() == DType::f64)
      typed(0.0);
    else
      typed(0.0f);
  }
}

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update with learning rate `lr` (the schedule's value for this step).
  virtual void step(ParameterStore& params, double lr) = 0;
  // Number of steps applied so far (Adam's bias correction uses it).
  virtual int64_t steps() const = 0;
  virtual void set_steps(int64_t steps) = 0;
  virtual std::vector<OptimizerSlot> slots() const = 0;
};

struct AdamWOptions {
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  // Decoupled and multiplied by the learning rate: update = -lr * (adam_step + wd * param).
  double weight_decay = 0;
  // Apply decay only where the store's decay mask is 1 (kernels), else to every parameter.
  bool decay_masked_only = true;
};

struct SgdOptions {
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0;  // decoupled, multiplied by the learning rate
  bool decay_masked_only = true;
};

}  // namespace vmoe
