// Vision Transformer (PAPER.md "Model"): patch embedding, class token, learned position
// embedding, pre-LN encoder blocks, final LayerNorm, token/GAP readout, optional pre-logits,
// head. With config.moe set, the blocks named by the MoE placement use an MoE layer instead of
// the MLP (V-MoE).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/dense.h"
#include "models/encoder_block.h"
#include "models/vit_config.h"
#include "parallel/expert_exchange.h"

namespace vmoe {

struct VitOutput {
  Tensor logits;               // [B, num_classes]
  Tensor pre_logits;           // [B, R or D] the representation fed to the head
  std::vector<MoeReport> moe;  // one per MoE layer, in block order (diagnostics)
  Tensor aux_loss;  // scalar sum of the MoE layers' weighted aux losses (from the layers,
                    // independent of the reports), or undefined for a dense model
};

// What a training (or evaluation) forward pass costs, part by part (models/layer_cost.h).
struct VitCost {
  LayerCost stem;                 // patches, embedding, class token, position embedding
  std::vector<LayerCost> blocks;  // encoder blocks
  LayerCost tail;                 // final norm, readout, pre-logits, head
  int64_t block_input_bytes = 0;  // one block's input [B, T, D]
  LayerCost total() const {
    LayerCost c = stem;
    for (const LayerCost& b : blocks)
      c += b;
    c += tail;
    return c;
  }
};

class VisionTransformer {
 public:
  // Declares every parameter in `store` (allocate the store afterwards).
  // `exchange` carries MoE tokens to their experts (default: all experts local).
  VisionTransformer(ParameterStore& store, VitConfig config,
                    std::shared_ptr<const ExpertExchange> exchange = nullptr);

  // images [B, H, W, C] (normalised floats) -> logits and pre-logits.
  VitOutput operator()(const Tensor& images, const ForwardContext& ctx) const;
  // What operator() costs for s.batch images, from shapes alone (an unallocated store is fine),
  // every activation kept (what recomputation keeps instead: launch/plan.cpp).
  VitCost cost(const CostShape& s) const;

  const VitConfig& config() const { return config_; }
  // Where its parameters (and so its activations) live.
  Device device() const { return store_->device(); }
  const std::vector<std::unique_ptr<EncoderBlock>>& blocks() const { return blocks_; }
  // Name of block i's parameter prefix: "encoder/block_03".
  static std::string block_prefix(int64_t i);

 private:
  // Block i on x; with config.recompute in training, as a checkpointed segment.
  FeedForwardOutput run_block(size_t i, const Tensor& x, const ForwardContext& ctx) const;

  const ParameterStore* store_;
  VitConfig config_;
  Dense embedding_;
  std::optional<ParamId> cls_;
  ParamId pos_embedding_;
  std::vector<std::unique_ptr<EncoderBlock>> blocks_;
  std::vector<std::vector<ParamId>> block_params_;  // per block (recompute: the segment's leaves)
  LayerNorm encoder_norm_;
  std::optional<Dense> pre_logits_;
  Dense head_;
};

// Checks a VitConfig; throws std::invalid_argument naming the field and what was expected.
void validate(const VitConfig& config);

}  // namespace vmoe
