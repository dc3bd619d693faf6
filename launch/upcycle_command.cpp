// `vmoe upcycle`: a V-MoE initialised from a dense ViT's weights (sparse upcycling), written as
// a weights file.
#include <cstdio>
#include <stdexcept>

#include "launch/commands.h"
#include "launch/experiment.h"
#include "launch/init_config.h"
#include "models/vision_transformer.h"
#include "parallel/init_from.h"
#include "parallel/weights_file.h"

namespace vmoe {

int run_upcycle(const UpcycleArgs& args) {
  const config::Config cfg = config::load_config(args.config_path, args.overrides);
  if (!cfg.model().has_moe()) {
    throw std::runtime_error("`vmoe upcycle`: the config '" + args.config_path +
                             "' has no model.moe: upcycling needs a V-MoE config");
  }
  ParameterStore params;
  VisionTransformer model(params, vit_config_from(cfg.model()));
  params.allocate(cfg.train().seed(), param_dtype_from(cfg.model()), kCpu);
  config::InitConfig init = cfg.init();
  init.set_preset(config::InitConfig::UPCYCLE);
  const std::vector<InitRule> rules = init_rules_from(init);
  const InitPlan plan = init_from_file(args.from, rules, params);
  std::fputs(init_report(args.from, rules, plan).c_str(), stdout);
  save_weights(args.output, params, config::config_to_text(cfg), 0);
  std::printf("weights: %s\n", args.output.c_str());
  return 0;
}

}  // namespace vmoe
