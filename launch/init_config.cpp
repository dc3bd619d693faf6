// Config init rules -> InitRule.
#include "launch/init_config.h"

namespace vmoe {

std::vector<InitRule> init_rules_from(const config::InitConfig& init) {
  std::vector<InitRule> rules;
  for (const config::InitRule& r : init.rules()) {
    InitTransform t = InitTransform::copy;
    switch (r.transform()) {
      case config::InitRule::COPY:
        t = InitTransform::copy;
        break;
      case config::InitRule::KEEP_FRESH:
        t = InitTransform::keep_fresh;
        break;
      case config::InitRule::RESHAPE:
        t = InitTransform::reshape;
        break;
      case config::InitRule::STACK:
        t = InitTransform::stack;
        break;
      case config::InitRule::TILE:
        t = InitTransform::tile;
        break;
      case config::InitRule::ZOOM_POSEMB:
        t = InitTransform::zoom_posemb;
        break;
    }
    rules.push_back({r.target(), r.source(), t, r.required()});
  }
  if (init.preset() == config::InitConfig::UPCYCLE) {
    for (InitRule& r : upcycle_rules())
      rules.push_back(std::move(r));
  }
  return rules;
}

}  // namespace vmoe
