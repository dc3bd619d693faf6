// Learning-rate schedules: constant, linear warmup then linear decay, linear warmup then
// cosine decay (PAPER.md recipes).
#pragma once
#include <cstdint>

namespace vmoe {

struct LrSchedule {
  enum class Kind : uint8_t { constant, warmup_linear_decay, warmup_cosine_decay };
  Kind kind = Kind::constant;
  double peak = 1e-3;
  double end = 1e-5;  // value reached at total_steps by the decays
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // Learning rate used for update number `step` (0-based).
  double at(int64_t step) const;
};

}  // namespace vmoe
