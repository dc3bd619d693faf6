// What a forward pass needs besides its inputs: training or evaluation, and the keys that
// make dropout and routing noise a pure function of (seed, step, layer, global example).
#pragma once
#include <cstdint>

#include "core/rng.h"

namespace vmoe {

enum class Mode : uint8_t { train, eval };

struct ForwardContext {
  Mode mode = Mode::eval;
  RngKey key{};               // already specific to this step
  int64_t first_example = 0;  // global index of the batch's first example
  bool training() const { return mode == Mode::train; }
};

}  // namespace vmoe
