// The config's init section (configs/vmoe.proto InitConfig) as the rules of
// parallel/init_rules.h: its own rules in order, then those of its preset.
#pragma once
#include <vector>

#include "configs/config.h"
#include "parallel/init_rules.h"

namespace vmoe {

std::vector<InitRule> init_rules_from(const config::InitConfig& init);

}  // namespace vmoe
