// The parameters of the checkpoint template (corpus/h5_files/checkpoint.h5): make_seeds writes
// it from this store, fuzz_checkpoint loads edited copies of it back into the same store.
#pragma once
#include "core/parameters.h"

namespace vmoe::fuzz {

// Declares and allocates (on the CPU) a dense kernel [3, 2], a bias [2] and an expert kernel
// [2, 2, 3] sharded over 2 experts.
inline void declare_checkpoint_seed_params(ParameterStore& store) {
  store.declare("dense/kernel", {3, 2}, InitSpec::normal(1.0), WeightDecay::yes);
  store.declare("dense/bias", {2}, InitSpec::normal(1.0));
  store.declare("experts/kernel", {2, 2, 3}, InitSpec::normal(1.0), WeightDecay::yes,
                Sharding::expert);
  store.allocate(1, DType::f32, kCpu);
}

}  // namespace vmoe::fuzz
