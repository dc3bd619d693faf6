// The tables `vmoe bench train --profile` prints from an op profile (core/op_profile.h): time
// per region and phase, per kernel kind, and the MoE layers' parts.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/op_profile.h"

namespace vmoe {

// The MoE layers' time per step (forward and backward, all MoE layers), by part.
struct MoeProfile {
  double total_ms = 0;     // every "moe.*" region
  double experts_ms = 0;   // the expert MLPs
  double exchange_ms = 0;  // the all-to-all exchange, around the experts
  double report_ms = 0;    // statistics for the logs
  // Router, top-k, slots, dispatch, combine and auxiliary losses: what routing adds to the
  // expert MLPs.
  double routing_ms = 0;
};
MoeProfile moe_profile(const std::vector<ProfileRow>& rows, int64_t steps);

// Human-readable tables, per step.
std::string profile_text(const std::vector<ProfileRow>& rows, int64_t steps);
// {"steps", "regions": [{region, phase, wall_ms, kernel_ms}], "kernels": [{kernel, phase,
// calls, ms}], "moe": {...}}, per step.
nlohmann::json profile_json(const std::vector<ProfileRow>& rows, int64_t steps);

}  // namespace vmoe
