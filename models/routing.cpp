// Slot assignment.
#include "models/routing.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "models/moe_config.h"

namespace vmoe {

RoutingPlan plan_routing(const std::vector<int64_t>& experts, const std::vector<double>& priority,
                         int64_t num_tokens, int64_t k, int64_t num_experts, int64_t group_size,
                         double capacity_factor, TokenOrder order) {
  if (int64_t(experts.size()) != num_tokens * k || int64_t(priority.size()) != num_tokens)
    throw std::invalid_argument("plan_routing: experts/priority sizes do not match " +
                                std::to_string(num_tokens) + " tokens x k " + std::to_string(k));
  if (group_size < 1) throw std::invalid_argument("plan_routing: group_size must be >= 1");
  RoutingPlan plan;
  plan.num_experts = num_experts;
  plan.k = k;
  for (int64_t start = 0; start < num_tokens; start += group_size) {
    const int64_t s = std::min(group_size, num_tokens - start);
    plan.group_start.push_back(start);
    plan.group_tokens.push_back(s);
    plan.capacity_offset.push_back(plan.rows_per_expert);
    plan.capacity.push_back(expert_capacity(s, k, capacity_factor, num_experts));
    plan.rows_per_expert += plan.capacity.back();
  }
  const int64_t rows = plan.rows_per_expert;
  plan.dispatch_rows.assign(size_t(num_experts * rows), -1);
  plan.combine_rows.assign(size_t(num_tokens * k), -1);
  plan.expert_load.assign(size_t(num_experts), 0);
  std::vector<int64_t> tokens, fill(static_cast<size_t>(num_experts));
  for (size_t g = 0; g < plan.group_start.size(); ++g) {
    const int64_t start = plan.group_start[g], s = plan.group_tokens[g];
    const int64_t cap = plan.capacity[g], offset = plan.capacity_offset[g];
    tokens.resize(size_t(s));
    std::iota(tokens.begin(), tokens.end(), start);
    if (order == TokenOrder::batch_priority) {
      std::stable_sort(tokens.begin(), tokens.end(), [&](int64_t a, int64_t b) {
        return priority[size_t(a)] > priority[size_t(b)];
      });
    }
    std::fill(fill.begin(), fill.end(), 0);
    for (int64_t r = 0; r < k; ++r) {
      for (int64_t t : tokens) {
        const int64_t e = experts[size_t(t * k + r)];
        if (e < 0 || e >= num_experts)
          throw std::invalid_argument("plan_routing: expert " + std::to_string(e) + " of token " +
                                      std::to_string(t) + " outside [0, " +
                                      std::to_string(num_experts) + ")");
        if (fill[size_t(e)] >= cap) {
          ++plan.dropped;
          continue;
        }
        const int64_t row = e * rows + offset + fill[size_t(e)]++;
        plan.dispatch_rows[size_t(row)] = t;
        plan.combine_rows[size_t(t * k + r)] = row;
        ++plan.expert_load[size_t(e)];
      }
    }
  }
  return plan;
}

}  // namespace vmoe
