// MoE capacity, placement and validation.
#include "models/moe_config.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

#include "core/checked_math.h"

namespace vmoe {

int64_t expert_capacity(int64_t tokens, int64_t k, double capacity_factor, int64_t num_experts) {
  auto describe = [&] {
    return " for a group of " + std::to_string(tokens) + " tokens (capacity_factor " +
           std::to_string(capacity_factor) + ", k " + std::to_string(k) + ", " +
           std::to_string(num_experts) + " experts)";
  };
  if (!(std::isfinite(capacity_factor) && capacity_factor > 0)) {
    throw std::invalid_argument("expert capacity: the capacity factor must be finite and > 0" +
                                describe());
  }
  if (tokens < 0 || k < 1 || num_experts < 1) {
    throw std::invalid_argument(
        "expert capacity: tokens must be >= 0, k and the number of "
        "experts >= 1" +
        describe());
  }
  // S * k exactly in integers; the one rounding is the division of the double product.
  const int64_t assignments = checked_mul(tokens, k, "expert capacity: tokens x k");
  const double raw = double(assignments) * capacity_factor / double(num_experts);
  // At most what a 64-bit row count of every expert's buffer can hold (with room to round up).
  if (!(raw < 0x1p62)) throw SizeOverflow("expert capacity " + std::to_string(raw) + describe());
  // ceil of the exact value: a factor such as 0.4 (a double) gives exactly S * k * 0.4 / E when
  // that is an integer, so no epsilon is needed; any positive value gives at least 4.
  const int64_t c = std::max<int64_t>(1, int64_t(std::ceil(raw)));
  return (c + 3) / 4 * 4;
}

int64_t soft_slots_per_expert(const MoeConfig& m, int64_t tokens_per_image) {
  if (m.slots_per_expert > 0) return m.slots_per_expert;
  // As the reference's Soft MoE: rounded to the nearest integer, no multiple of 4.
  const double raw = double(tokens_per_image) * m.capacity_factor / double(m.num_experts);
  if (!(raw < 0x1p62)) throw SizeOverflow("soft MoE slots per expert " + std::to_string(raw));
  return std::max<int64_t>(1, int64_t(std::llround(raw)));
}

std::vector<int64_t> every_n_blocks(int64_t num_layers, int64_t n) {
  std::vector<int64_t> out;
  for (int64_t b = n - 1; n > 0 && b < num_layers; b += n)
    out.push_back(b);
  return out;
}

std::vector<int64_t> last_n_blocks(int64_t num_layers, int64_t n) {
  std::vector<int64_t> out;
  int64_t b = num_layers % 2 == 0 ? num_layers - 1 : num_layers - 2;
  for (; b >= 0 && int64_t(out.size()) < n; b -= 2)
    out.insert(out.begin(), b);
  return out;
}

void validate(const MoeConfig& m, int64_t num_layers) {
  auto bad = [](const std::string& field, const std::string& what) {
    throw std::invalid_argument("model.moe." + field + " " + what);
  };
  if (m.num_experts < 1) bad("num_experts", "must be >= 1, got " + std::to_string(m.num_experts));
  if (m.k < 1 || m.k > m.num_experts)
    bad("k", "must be in [1, num_experts = " + std::to_string(m.num_experts) + "], got " +
                 std::to_string(m.k));
  for (auto [name, c] : {std::pair{"capacity_factor", m.capacity_factor},
                         std::pair{"eval_capacity_factor", m.eval_capacity_factor}}) {
    if (!(std::isfinite(c) && c > 0)) bad(name, "must be finite and > 0, got " + std::to_string(c));
  }
  if (m.images_per_group < 1)
    bad("images_per_group", "must be >= 1, got " + std::to_string(m.images_per_group));
  if (!(std::isfinite(m.noise_std) && m.noise_std >= 0))
    bad("noise_std", "must be finite and >= 0, got " + std::to_string(m.noise_std));
  for (auto [name, w] : {std::pair{"importance_loss_weight", m.importance_loss_weight},
                         std::pair{"load_loss_weight", m.load_loss_weight},
                         std::pair{"gshard_loss_weight", m.gshard_loss_weight}}) {
    if (!(std::isfinite(w) && w >= 0))
      bad(name, "must be finite and >= 0, got " + std::to_string(w));
  }
  if (m.slots_per_expert < 0)
    bad("slots_per_expert", "must be >= 1 (or unset), got " + std::to_string(m.slots_per_expert));
  if (m.dropless && m.router != MoeRouter::top_k)
    bad("dropless", "applies to router TOP_K only (Experts Choice and Soft MoE drop no choice)");
  if (m.router != MoeRouter::top_k && (m.batch_priority || m.eval_batch_priority))
    bad("batch_priority", "applies to router TOP_K only (no token order to prioritise)");
  if (m.dropless && (m.batch_priority || m.eval_batch_priority))
    bad("batch_priority", "has no effect with dropless routing (no choice is dropped)");
  std::set<int64_t> seen;
  for (int64_t b : m.moe_blocks) {
    if (b < 0 || b >= num_layers)
      bad("placement", "names block " + std::to_string(b) + " outside the model's " +
                           std::to_string(num_layers) + " blocks (0-based)");
    if (!seen.insert(b).second) bad("placement", "names block " + std::to_string(b) + " twice");
  }
}

}  // namespace vmoe
