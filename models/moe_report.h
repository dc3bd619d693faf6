// What one MoE layer reports about a forward pass: its weighted auxiliary loss (part of the
// training loss), the loss terms, load balance and drops as tensors on the layer's device (so
// that a training step reads nothing back; MoeStats reads them when a step is logged),
// compute, and optionally the routing of every token.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

// Per-token routing of one layer (filled when ForwardContext::record_routing is set).
// k columns for top-k and dropless; E for Experts Choice and Soft MoE (docs/routers.md).
struct RoutingRecord {
  Tensor experts;  // [N, k] i64 chosen experts, best first (N = B * T tokens)
  Tensor weights;  // [N, k] f32 combine weights (softmax probabilities)
  Tensor kept;     // [N, k] u8 1 if the assignment got a slot
};

// Layout of MoeReport::stats.
enum MoeStat : int64_t {
  kImportanceLoss = 0,  // mean over groups, unweighted
  kLoadLoss,            // training only (0 otherwise)
  kGshardLoss,          // 0 unless its weight is > 0
  kDroppedFraction,     // dropped assignments / (tokens * k); Experts Choice: tokens that no
                        // expert took / tokens; Soft MoE and dropless: 0
  kNumMoeStats
};

struct MoeReport {
  int64_t block = 0;   // encoder block index
  Tensor aux_loss;     // scalar, weighted sum of the auxiliary losses (differentiable)
  Tensor stats;        // [kNumMoeStats] f64 on the layer's device, see MoeStat
  Tensor expert_load;  // [E] f64 on the layer's device: kept assignments per expert
  double flops = 0;    // router + experts, forward (from shapes: no device data)
  RoutingRecord routing;
};

// A report's figures on the host (one host read each of stats and expert_load): for logging
// steps, evaluation and tools.
struct MoeStats {
  double importance_loss = 0, load_loss = 0, gshard_loss = 0, dropped_fraction = 0;
  std::vector<int64_t> expert_load;  // [E]

  static MoeStats read(const MoeReport& report);
};

}  // namespace vmoe
