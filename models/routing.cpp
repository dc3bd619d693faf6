// Routing layout from shapes.
#include "models/routing.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/checked_math.h"
#include "models/moe_config.h"

namespace vmoe {

SlotLayout routing_layout(int64_t num_tokens, int64_t k, int64_t num_experts, int64_t group_size,
                          double capacity_factor) {
  if (group_size < 1) throw std::invalid_argument("routing: group_size must be >= 1");
  SlotLayout L;
  L.tokens = num_tokens;
  L.k = k;
  L.experts = num_experts;
  L.group_size = group_size;
  const int64_t groups = L.groups();
  if (groups == 0) return L;
  L.capacity = expert_capacity(std::min(group_size, num_tokens), k, capacity_factor, num_experts);
  const int64_t last_tokens = num_tokens - (groups - 1) * group_size;
  L.last_capacity = last_tokens == group_size
                        ? L.capacity
                        : expert_capacity(last_tokens, k, capacity_factor, num_experts);
  L.rows_per_expert = checked_add(
      checked_mul(groups - 1, L.capacity, "routing: rows per expert (groups x capacity)"),
      L.last_capacity, "routing: rows per expert");
  return L;
}

}  // namespace vmoe
