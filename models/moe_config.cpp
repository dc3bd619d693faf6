// MoE capacity, placement and validation.
#include "models/moe_config.h"

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

namespace vmoe {

int64_t expert_capacity(int64_t tokens, int64_t k, double capacity_factor, int64_t num_experts) {
  const double raw = double(tokens) * double(k) * capacity_factor / double(num_experts);
  if (raw < 1.0) {
    throw std::invalid_argument(
        "expert capacity " + std::to_string(raw) + " < 1 for a group of " + std::to_string(tokens) +
        " tokens (capacity_factor " + std::to_string(capacity_factor) + ", k " + std::to_string(k) +
        ", " + std::to_string(num_experts) +
        " experts): raise the capacity factor or model.moe.images_per_group");
  }
  // The small epsilon keeps e.g. 10 * 1.05 * ... from ceiling to one more than intended.
  const int64_t c = int64_t(std::ceil(raw - 1e-9));
  return (c + 3) / 4 * 4;
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
  if (!(m.capacity_factor > 0))
    bad("capacity_factor", "must be > 0, got " + std::to_string(m.capacity_factor));
  if (!(m.eval_capacity_factor > 0))
    bad("eval_capacity_factor", "must be > 0, got " + std::to_string(m.eval_capacity_factor));
  if (m.images_per_group < 1)
    bad("images_per_group", "must be >= 1, got " + std::to_string(m.images_per_group));
  if (!(m.noise_std >= 0)) bad("noise_std", "must be >= 0, got " + std::to_string(m.noise_std));
  for (auto [name, w] : {std::pair{"importance_loss_weight", m.importance_loss_weight},
                         std::pair{"load_loss_weight", m.load_loss_weight},
                         std::pair{"gshard_loss_weight", m.gshard_loss_weight}}) {
    if (!(w >= 0)) bad(name, "must be >= 0, got " + std::to_string(w));
  }
  std::set<int64_t> seen;
  for (int64_t b : m.moe_blocks) {
    if (b < 0 || b >= num_layers)
      bad("placement", "names block " + std::to_string(b) + " outside the model's " +
                           std::to_string(num_layers) + " blocks (0-based)");
    if (!seen.insert(b).second) bad("placement", "names block " + std::to_string(b) + " twice");
  }
}

}  // namespace vmoe
