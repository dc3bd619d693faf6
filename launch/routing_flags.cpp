// Test-time routing flags against the saved model's router.
#include "launch/routing_flags.h"

#include <stdexcept>

#include "core/error_text.h"

namespace vmoe {

void check_routing_flags(const config::Config& cfg, const std::string& weights,
                         const RoutingFlags& flags) {
  const bool capacity = flags.capacity_factor != 0 || flags.capacity_sweep;
  if (!cfg.model().has_moe()) {
    if (capacity || !flags.bpr.empty())
      throw std::runtime_error(
          "--capacity-factor, --bpr and --capacity-sweep need a V-MoE model (" +
          quote_for_error(weights) + " is dense)");
    return;
  }
  const config::MoeConfig& moe = cfg.model().moe();
  const std::string router = config::MoeConfig::Router_Name(moe.router());
  if (capacity && moe.router() == config::MoeConfig::SOFT)
    throw std::runtime_error(
        "--capacity-factor and --capacity-sweep do not apply to router SOFT (its slots are "
        "parameters: their number is fixed by training)");
  if (capacity && moe.dropless())
    throw std::runtime_error(
        "--capacity-factor and --capacity-sweep do not apply to dropless routing (no capacity)");
  if (!flags.bpr.empty() && (moe.router() != config::MoeConfig::TOP_K || moe.dropless()))
    throw std::runtime_error("--bpr applies to capacity top-k routing only, not to router " +
                             router + (moe.dropless() ? " with dropless: true" : ""));
  if (flags.capacity_factor != 0)
    config::check_float(flags.capacity_factor, "--capacity-factor", {0, 65536, true});
  (void)parse_bpr(flags.bpr);
}

std::optional<bool> parse_bpr(const std::string& bpr) {
  if (bpr.empty()) return std::nullopt;
  if (bpr == "on") return true;
  if (bpr == "off") return false;
  throw std::runtime_error("--bpr must be 'on' or 'off', got " + quote_for_error(bpr));
}

}  // namespace vmoe
