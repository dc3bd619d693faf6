// Learning-rate schedule values.
#include "core/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace vmoe {

double LrSchedule::at(int64_t step) const {
  if (kind == Kind::constant) return peak;
  // Warmup goes linearly from 0 to peak; the first update uses peak / warmup.
  if (step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
  const double span = double(std::max<int64_t>(total_steps - warmup_steps, 1));
  const double frac = std::clamp(double(step - warmup_steps) / span, 0.0, 1.0);
  if (kind == Kind::warmup_linear_decay) return end + (peak - end) * (1.0 - frac);
  return end + (peak - end) * 0.5 * (1.0 + std::cos(std::numbers::pi * frac));
}

}  // namespace vmoe
