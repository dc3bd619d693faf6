// Hyper-parameters of the V-MoE layers (protobuf-free; launch/ converts the config file).
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe {

// How tokens meet experts (configs/vmoe.proto MoeConfig.Router has each formulation).
enum class MoeRouter : uint8_t {
  top_k,           // each token picks its k experts (the paper's router), capacity or dropless
  experts_choice,  // each expert picks its top-C tokens of the group (Zhou et al. 2022)
  soft,            // each slot a softmax mix of an image's tokens (Puigcerver et al. 2023)
};

struct MoeConfig {
  MoeRouter router = MoeRouter::top_k;
  bool dropless = false;    // top_k: every choice is computed, expert batches of variable size
  int64_t num_experts = 8;  // E
  int64_t k = 2;            // experts selected per token
  double capacity_factor = 1.05;       // training
  double eval_capacity_factor = 1.05;  // evaluation (test-time capacity)
  bool batch_priority = false;         // BPR in training
  bool eval_batch_priority = false;    // BPR in evaluation
  int64_t images_per_group = 8;        // routing group = this many images' tokens
  double noise_std = 1.0;              // router noise sigma = noise_std / E
  double importance_loss_weight = 0.005;
  double load_loss_weight = 0.005;
  double gshard_loss_weight = 0.0;
  bool identical_expert_init = true;  // one draw copied to every expert (paper configs)
  std::vector<int64_t> moe_blocks;    // 0-based indices of blocks whose MLP is an MoE layer
  // soft: slots per expert; 0 = round(tokens per image * capacity_factor / E), at least 1.
  int64_t slots_per_expert = 0;
};

// Soft MoE slots per expert of an image of `tokens_per_image` tokens (MoeConfig above).
int64_t soft_slots_per_expert(const MoeConfig& moe, int64_t tokens_per_image);

// Capacity per expert of a group of `tokens` (PAPER.md "Router" step 5): ceil(tokens * k *
// factor / E), rounded up to a multiple of 4, so any positive value gives at least 4 (as the
// reference). Throws std::invalid_argument only for a non-positive or non-finite factor (or
// negative sizes), SizeOverflow when the capacity would not fit in 64 bits.
int64_t expert_capacity(int64_t tokens, int64_t k, double capacity_factor, int64_t num_experts);

// Blocks of an L-block model for the paper's placements: every-n (n-1, 2n-1, ...) and last-n
// (the last n odd blocks).
std::vector<int64_t> every_n_blocks(int64_t num_layers, int64_t n);
std::vector<int64_t> last_n_blocks(int64_t num_layers, int64_t n);

// Throws std::invalid_argument naming the field (model.moe.*) and what was expected.
void validate(const MoeConfig& moe, int64_t num_layers);

}  // namespace vmoe
