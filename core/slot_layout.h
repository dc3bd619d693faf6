// The group and capacity layout of V-MoE slot assignment (PAPER.md "Router", steps 5-6):
// consecutive groups of `group_size` tokens (the last group may be smaller and has its own
// capacity); group g owns rows [g * capacity, g * capacity + its capacity) of every expert's
// R rows in the dispatch buffer [E, R, D]. Known from shapes alone: no device data.
#pragma once
#include <cstdint>

namespace vmoe {

struct SlotLayout {
  int64_t tokens = 0, k = 0, experts = 0, group_size = 0;
  int64_t capacity = 0;       // C of a full group
  int64_t last_capacity = 0;  // C of the last group (== capacity when it is full)
  int64_t rows_per_expert = 0;
  int64_t groups() const { return group_size > 0 ? (tokens + group_size - 1) / group_size : 0; }
  int64_t full_groups() const { return group_size > 0 ? tokens / group_size : 0; }
};

}  // namespace vmoe
