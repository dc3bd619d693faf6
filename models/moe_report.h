// What one MoE layer reports about a forward pass: its weighted auxiliary loss (part of the
// training loss), the loss terms, load balance, drops, compute, and optionally the routing of
// every token.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

// Per-token routing of one layer (filled when ForwardContext::record_routing is set).
struct RoutingRecord {
  Tensor experts;  // [N, k] i64 chosen experts, best first (N = B * T tokens)
  Tensor weights;  // [N, k] f32 combine weights (softmax probabilities)
  Tensor kept;     // [N, k] u8 1 if the assignment got a slot
};

struct MoeReport {
  int64_t block = 0;           // encoder block index
  Tensor aux_loss;             // scalar, weighted sum of the auxiliary losses (differentiable)
  double importance_loss = 0;  // mean over groups, unweighted
  double load_loss = 0;        // training only
  double gshard_loss = 0;
  double dropped_fraction = 0;       // dropped assignments / (tokens * k)
  std::vector<int64_t> expert_load;  // [E] kept assignments per expert
  double flops = 0;                  // router + experts, forward
  RoutingRecord routing;
};

}  // namespace vmoe
