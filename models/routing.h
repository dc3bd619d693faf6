// Slot assignment of V-MoE routing (PAPER.md "Router", steps 5-7): per group, capacity per
// expert, k-major assignment (every token's 1st choice before any token's 2nd), tokens taken
// in token order or by Batch Prioritized Routing (descending priority, stable), assignments
// that find their expert full dropped. Pure index work on the CPU; no autograd.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe {

enum class TokenOrder : bool { vanilla = false, batch_priority = true };

// Where every assignment goes. The dispatch buffer is [E, R, D] with R = sum of the groups'
// capacities; group g owns rows [capacity_offset[g], capacity_offset[g] + capacity[g]) of
// every expert.
struct RoutingPlan {
  int64_t num_experts = 0, k = 0;
  int64_t rows_per_expert = 0;           // R
  std::vector<int64_t> group_start;      // [G] first token of each group
  std::vector<int64_t> group_tokens;     // [G] S_g
  std::vector<int64_t> capacity;         // [G] C_g
  std::vector<int64_t> capacity_offset;  // [G]
  std::vector<int64_t> dispatch_rows;    // [E * R] token of each buffer row, -1 = padding
  std::vector<int64_t> combine_rows;     // [N * k] buffer row of (token, rank), -1 = dropped
  std::vector<int64_t> expert_load;      // [E] kept assignments per expert
  int64_t dropped = 0;                   // dropped assignments
};

// experts [N, k]: the chosen experts of each token, best first. priority [N]: each token's
// largest routing weight (used by batch_priority). Tokens are split into consecutive groups
// of `group_size` (the last may be smaller).
RoutingPlan plan_routing(const std::vector<int64_t>& experts, const std::vector<double>& priority,
                         int64_t num_tokens, int64_t k, int64_t num_experts, int64_t group_size,
                         double capacity_factor, TokenOrder order);

}  // namespace vmoe
