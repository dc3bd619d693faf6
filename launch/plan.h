// `vmoe plan` (docs/planning.md): what a config costs on P ranks, computed from the model
// itself: the VisionTransformer is built on an unallocated ParameterStore (its layers declare
// their parameters) and its layers declare their FLOPs and the activations they keep for
// backward (models/layer_cost.h). Nothing here allocates tensors.
#pragma once
#include <cstdint>
#include <optional>

#include "configs/config.h"
#include "models/precision.h"

namespace vmoe {

enum class Recompute : uint8_t { none, blocks };

// The largest world size and global batch plan considers.
inline constexpr int64_t kMaxWorldSize = int64_t(1) << 20;
inline constexpr int64_t kMaxPlanBatch = int64_t(1) << 24;

// An H200's 141 GB (decimal, as sold): the default device memory.
inline constexpr double kH200Bytes = 141e9;

struct PlanOptions {
  int world_size = 1;
  int64_t batch = 0;                   // global batch; 0 = data.batch_size
  int64_t microbatches = 0;            // micro-batches per rank per step; 0 = train.microbatches
  std::optional<Precision> precision;  // unset: train.precision
  std::optional<Recompute> recompute;  // unset: model.recompute
  double device_memory_bytes = kH200Bytes;
};

// One rank's memory at its peak (the end of forward / start of backward), bytes. Flat
// buffers count in the caching allocator's size classes (up to 1/8 above their size).
struct RankMemory {
  int64_t params = 0;              // values, in model.dtype
  int64_t grads = 0;               // flat gradients, in model.dtype
  int64_t decay_mask = 0;          // the store's flat weight-decay mask, a byte per value
  int64_t optimizer = 0;           // AdamW: 2 slots; SGD: 1 (momentum); in model.dtype
  int64_t activations = 0;         // kept for backward (as recomputation chooses) and the loss's
  int64_t backward_workspace = 0;  // estimate: one block's activation gradients
  int64_t exchange_buffers = 0;    // one MoE layer's all-to-all send + receive buffers
  int64_t total() const {
    return params + grads + decay_mask + optimizer + activations + backward_workspace +
           exchange_buffers;
  }
};

struct Plan {
  int world_size = 1;
  int64_t batch = 0, microbatches = 1;
  int64_t rank_batch = 0;  // images per rank per micro-batch
  Precision precision = Precision::f32;
  Recompute recompute = Recompute::none;
  int expert_ranks = 1;  // Pe = min(E, P): ranks that split every MoE layer's experts
  // Parameters over all ranks, and on one rank (replicated + its E / Pe experts per layer).
  int64_t params_total = 0, params_experts = 0, params_dense = 0;
  int64_t rank_params = 0, rank_params_experts = 0;
  // Forward GEMM FLOPs per image at the training capacity, and with every token at exactly
  // k experts; training FLOPs (forward, backward, recomputation) per step over all ranks.
  double forward_flops_per_image = 0, active_flops_per_image = 0;
  double train_flops_per_step = 0;
  // Activations kept for backward on one rank, both ways (the loss's included).
  int64_t activations_no_recompute = 0, activations_recompute = 0;
  int64_t weight_cast_bytes = 0;        // bf16 copies of the weights, part of the activations
  int64_t alltoall_bytes_per_step = 0;  // sent by one rank to the others per step
  RankMemory memory;
  double device_memory_bytes = kH200Bytes;
  bool fits = false;
  int min_world_size = 0;  // smallest valid P that fits (same batch); 0 = none
};

// Throws std::invalid_argument (naming the flag or field) for a layout that cannot run.
Plan make_plan(const config::Config& config, const PlanOptions& options);

}  // namespace vmoe
