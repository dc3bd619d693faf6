// `vmoe eval`: evaluates saved weights on the test split of their config's dataset.
#include <cstdio>
#include <filesystem>

#include "google/protobuf/text_format.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/workdir.h"
#include "parallel/weights_file.h"

namespace vmoe {

int run_eval(const EvalArgs& args) {
  if (args.workdir.empty() == args.weights.empty()) {
    throw std::runtime_error("vmoe eval needs exactly one of --workdir or --weights");
  }
  std::string weights_path = args.weights;
  config::Config cfg;
  if (!args.workdir.empty()) {
    const std::filesystem::path dir = args.workdir;
    cfg = config::load_config((dir / "config.textproto").string(), args.overrides);
    weights_path = (dir / cfg.output().weights_file()).string();
  } else {
    cfg = config::parse_config_text(read_weights_config(weights_path), weights_path + ":config",
                                    args.overrides);
  }
  const data::ImageDataset test_set = load_split(cfg, data::Split::test);
  ParameterStore params;
  VisionTransformer model(params, vit_config_from(cfg.model()));
  params.allocate(0, param_dtype_from(cfg.model()));
  load_weights(weights_path, params);
  EvalResult r = evaluate(model, test_set, cfg.data().eval_batch_size(),
                          normalization_from(cfg.data()), loss_from(cfg.train()));
  std::printf("test accuracy: %.2f%% (%lld images), loss %.4f\n", 100 * r.accuracy,
              static_cast<long long>(r.examples), r.loss);
  return 0;
}

}  // namespace vmoe
