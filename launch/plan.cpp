// `vmoe plan`: per-rank parameters, FLOPs, memory and exchange volume from the model's own
// layers (launch/plan.h).
#include "launch/plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/parameters.h"
#include "launch/experiment.h"
#include "models/vision_transformer.h"
#include "parallel/process_groups.h"

namespace vmoe {

namespace {

// The model declared on an unallocated store, and what does not change with the world size.
struct Planner {
  const config::Config& config;
  PlanOptions options;
  ParameterStore store;
  VisionTransformer model;
  int64_t num_experts, images_per_group, batch;
  DType param, activation;
  int64_t optimizer_slots;

  Planner(const config::Config& c, const PlanOptions& o)
      : config(c),
        options(o),
        model(store, vit_config_from(c.model())),
        num_experts(c.model().has_moe() ? c.model().moe().num_experts() : 0),
        images_per_group(num_experts > 0 ? moe_group_images(c.model().moe()) : 1),
        batch(o.batch > 0 ? o.batch : c.data().batch_size()),
        param(param_dtype_from(c.model())),
        activation(activation_dtype(o.precision ? *o.precision : precision_from(c), param)),
        optimizer_slots(c.optimizer().kind() == config::OptimizerConfig::SGD ? 1 : 2) {
    if (o.batch < 0 || batch > kMaxPlanBatch) {
      throw std::invalid_argument("--batch must be in [1, " + std::to_string(kMaxPlanBatch) +
                                  "], got " + std::to_string(batch));
    }
    if (o.microbatches == 0) options.microbatches = c.train().microbatches();
    if (!o.recompute) {
      options.recompute = c.model().recompute() == config::ModelConfig::BLOCKS ? Recompute::blocks
                                                                               : Recompute::none;
    }
    if (activation == DType::bf16 && param != DType::f32) {
      throw std::invalid_argument(
          "--precision bf16 needs model.dtype 'f32' (f32 master weights), got '" +
          c.model().dtype() + "'");
    }
    if (options.microbatches < 1) {
      throw std::invalid_argument("--microbatches must be >= 1, got " +
                                  std::to_string(options.microbatches));
    }
    if (!(o.device_memory_bytes > 0)) {
      throw std::invalid_argument("--device-memory-gib must be > 0, got " +
                                  std::to_string(o.device_memory_bytes / double(1 << 30)));
    }
  }

  // The figures at `world_size` ranks; throws std::invalid_argument when the layout cannot run.
  Plan at(int world_size) const {
    if (world_size < 1 || world_size > kMaxWorldSize) {
      throw std::invalid_argument("--world-size must be in [1, " + std::to_string(kMaxWorldSize) +
                                  "], got " + std::to_string(world_size));
    }
    validate_layout(world_size, num_experts, batch, num_experts > 0 ? images_per_group : 0);
    const int64_t per_rank = batch / world_size, m = options.microbatches;
    if (per_rank % m != 0 || (per_rank / m) % images_per_group != 0) {
      throw std::invalid_argument(
          "--microbatches " + std::to_string(m) + " does not split " + std::to_string(per_rank) +
          " images per rank into micro-batches of whole routing groups of " +
          std::to_string(images_per_group) + " images");
    }
    Plan p;
    p.world_size = world_size;
    p.batch = batch;
    p.microbatches = m;
    p.rank_batch = per_rank / m;
    p.precision = activation == DType::bf16 ? Precision::bf16 : Precision::f32;
    p.recompute = *options.recompute;
    p.expert_ranks = expert_group_size(num_experts, world_size);
    p.device_memory_bytes = options.device_memory_bytes;
    for (const ParamInfo& info : store.infos()) {
      const int64_t n = shape_numel(info.shape);
      p.params_total += n;
      if (info.sharding == Sharding::expert) {
        // [E, ...]: a rank of the expert group holds E / Pe of them (ParameterStore::allocate).
        p.params_experts += n;
        p.rank_params_experts += n / num_experts * (num_experts / p.expert_ranks);
      }
    }
    p.params_dense = p.params_total - p.params_experts;
    p.rank_params = p.params_dense + p.rank_params_experts;

    CostShape shape;
    shape.batch = p.rank_batch;
    shape.activation = activation;
    shape.param = param;
    shape.expert_ranks = p.expert_ranks;
    // As `vmoe train`: the expert-parallel exchange only when the experts are split.
    shape.exchange = p.expert_ranks > 1 ? ExchangeKind::expert_parallel : ExchangeKind::local;
    const VitCost cost = model.cost(shape);
    const LayerCost total = cost.total();
    LayerCost blocks;
    int64_t largest_block = 0;
    for (const LayerCost& b : cost.blocks) {
      blocks += b;
      largest_block = std::max(largest_block, b.kept_bytes);
    }
    const double images = double(p.rank_batch);
    p.forward_flops_per_image = double(total.forward_flops) / images;
    p.active_flops_per_image = double(total.active_flops) / images;
    const bool recompute = *options.recompute == Recompute::blocks;
    // Recomputation runs every block's forward a second time in backward (exchange included).
    const double rank_step =
        double(total.forward_flops + total.backward_flops + (recompute ? blocks.forward_flops : 0));
    p.train_flops_per_step = rank_step * double(m) * double(world_size);
    p.alltoall_bytes_per_step = total.alltoall_bytes * (recompute ? 3 : 2) * m;

    const int64_t fs = int64_t(dtype_size(param));
    // The loss keeps d loss / d logits [B, classes] (core/ops_nn.cpp).
    const int64_t loss = p.rank_batch * config.model().num_classes() * fs;
    const int64_t small = int64_t(CachingAllocator::block_size(1));
    p.activations_no_recompute = total.kept_bytes + total.small_tensors * small + loss;
    // Recomputed blocks keep only their inputs; backward rebuilds one block at a time.
    p.activations_recompute = cost.stem.kept_bytes + cost.tail.kept_bytes + loss +
                              int64_t(cost.blocks.size()) * cost.block_input_bytes + largest_block +
                              (cost.stem.small_tensors + cost.tail.small_tensors) * small;
    p.weight_cast_bytes = total.cast_bytes;
    RankMemory& mem = p.memory;
    // One flat buffer per sharding class, in the allocator's size class (core/allocator.h);
    // the decay mask holds a byte per value.
    auto flat_bytes = [&](int64_t element_bytes) {
      return int64_t(CachingAllocator::block_size(size_t(p.params_dense * element_bytes)) +
                     CachingAllocator::block_size(size_t(p.rank_params_experts * element_bytes)));
    };
    const int64_t flat = flat_bytes(fs);
    mem.params = mem.grads = flat;
    mem.decay_mask = flat_bytes(1);
    mem.optimizer = optimizer_slots * flat;
    mem.activations = recompute ? p.activations_recompute : p.activations_no_recompute;
    mem.backward_workspace = largest_block;
    mem.exchange_buffers = total.exchange_buffer_bytes;
    p.fits = double(mem.total()) <= options.device_memory_bytes;
    return p;
  }
};

}  // namespace

Plan make_plan(const config::Config& config, const PlanOptions& options) {
  const Planner planner(config, options);
  Plan plan = planner.at(options.world_size);
  // The smallest rank count that runs this batch and fits (memory falls as P grows): only
  // divisors of the batch can split it.
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d * d <= planner.batch; ++d) {
    if (planner.batch % d != 0) continue;
    divisors.push_back(d);
    divisors.push_back(planner.batch / d);
  }
  std::sort(divisors.begin(), divisors.end());
  for (int64_t p : divisors) {
    if (p > kMaxWorldSize || plan.min_world_size > 0) break;
    try {
      if (planner.at(int(p)).fits) plan.min_world_size = int(p);
    } catch (const std::invalid_argument&) {
      // Not a valid layout at this P (the experts or the routing groups do not split).
    }
  }
  return plan;
}

}  // namespace vmoe
