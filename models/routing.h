// The routing layout of a V-MoE layer (PAPER.md "Router", steps 5-6): tokens split into
// consecutive groups of `group_size` (the last may be smaller), each with capacity
// C = expert_capacity(S_g, k, capacity_factor, E) slots per expert. The slot assignment
// itself runs on the device (core/ops.h: priority_order, assign_slots).
#pragma once
#include <cstdint>

#include "core/slot_layout.h"

namespace vmoe {

enum class TokenOrder : bool { vanilla = false, batch_priority = true };

SlotLayout routing_layout(int64_t num_tokens, int64_t k, int64_t num_experts, int64_t group_size,
                          double capacity_factor);

}  // namespace vmoe
