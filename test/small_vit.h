// The small Vision Transformer and V-MoE that the training and model tests share, and the
// comparison of two runs' parameter vectors.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "models/vit_config.h"

namespace vmoe::testing {

// 16 x 16 one-channel images in patches of 4 (17 tokens), D 32, MLP 64, 4 heads, `layers`
// blocks, dropout 0.1 on activations and attention weights.
inline VitConfig small_vit(int64_t layers) {
  VitConfig c;
  c.image_size = 16;
  c.patch_size = 4;
  c.hidden_size = 32;
  c.mlp_dim = 64;
  c.num_heads = 4;
  c.num_layers = layers;
  c.dropout_rate = 0.1;
  c.attention_dropout_rate = 0.1;
  return c;
}

// small_vit with MoE layers in `blocks` (E 4, k 2, routing groups of 2 images so that a batch
// has several groups, noisy routing).
inline VitConfig small_vmoe(int64_t layers, std::vector<int64_t> blocks) {
  VitConfig c = small_vit(layers);
  MoeConfig m;
  m.num_experts = 4;
  m.k = 2;
  m.images_per_group = 2;
  m.moe_blocks = std::move(blocks);
  c.moe = m;
  return c;
}

// The largest |a[i] - b[i]|; the sizes must match.
inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

}  // namespace vmoe::testing
