// Hyper-parameters of a Vision Transformer (protobuf-free; launch/ converts the config file).
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "core/checked_math.h"
#include "models/moe_config.h"

namespace vmoe {

struct VitConfig {
  int64_t image_size = 28;
  int64_t channels = 1;
  int64_t patch_size = 4;
  int64_t hidden_size = 64;  // D
  int64_t mlp_dim = 128;     // M
  int64_t num_heads = 4;
  int64_t num_layers = 4;
  int64_t num_classes = 10;
  enum class Classifier : uint8_t { token, gap } classifier = Classifier::token;
  int64_t representation_size = 0;  // pre-logits size; 0 = no pre-logits layer
  double dropout_rate = 0;
  double attention_dropout_rate = 0;
  double layer_norm_eps = 1e-6;
  std::optional<double> head_bias_init;  // default -log(num_classes)
  std::optional<MoeConfig> moe;          // V-MoE: MoE layers in moe->moe_blocks
  // Training keeps every activation (none), or only each encoder block's input and re-runs the
  // block in backward (blocks; core/checkpoint.h): bit-identical gradients, less memory.
  enum class Recompute : uint8_t { none, blocks } recompute = Recompute::none;

  // (image_size / patch_size)^2, checked: SizeOverflow rather than a wrapped token count.
  int64_t num_patches() const {
    const int64_t side = patch_size > 0 ? image_size / patch_size : 0;
    return checked_mul(side, side, "model.image_size / model.patch_size squared (patches)");
  }
  int64_t num_tokens() const { return num_patches() + (classifier == Classifier::token ? 1 : 0); }
  double head_bias() const {
    return head_bias_init ? *head_bias_init : -std::log(double(num_classes));
  }
};

}  // namespace vmoe
