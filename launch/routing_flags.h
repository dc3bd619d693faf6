// The test-time routing flags of the tools (`vmoe eval`, `predict`, `routing-map`, few-shot):
// --capacity-factor and --bpr (and eval's --capacity-sweep), checked once against the saved
// model's router, so that a flag the router cannot honour is an error instead of ignored.
#pragma once
#include <optional>
#include <string>

#include "configs/config.h"

namespace vmoe {

struct RoutingFlags {
  double capacity_factor = 0;  // 0: the config's eval capacity
  std::string bpr;             // "", "on" or "off"
  bool capacity_sweep = false;
};

// Throws std::runtime_error naming the flag and why: any of them for a dense model (`weights`
// names it); --capacity-factor / --capacity-sweep for Soft MoE (slots are parameters) and for
// dropless top-k (no capacity); --bpr for every router but capacity top-k; a capacity outside
// (0, 65536] or not finite; --bpr other than on / off.
void check_routing_flags(const config::Config& cfg, const std::string& weights,
                         const RoutingFlags& flags);

// --bpr as the ForwardContext override: unset for "".
std::optional<bool> parse_bpr(const std::string& bpr);

}  // namespace vmoe
