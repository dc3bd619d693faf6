// Loading a trained model.
#include "launch/saved_model.h"

#include <filesystem>
#include <stdexcept>

#include "launch/experiment.h"
#include "parallel/weights_file.h"

namespace vmoe {

SavedModel load_saved_model(const std::string& workdir, const std::string& weights,
                            const std::vector<std::string>& overrides) {
  if (workdir.empty() == weights.empty()) {
    throw std::runtime_error("give exactly one of --workdir or --weights");
  }
  SavedModel m;
  if (!workdir.empty()) {
    const std::filesystem::path dir = workdir;
    m.config = config::load_config((dir / "config.textproto").string(), overrides);
    m.weights_path = (dir / m.config.output().weights_file()).string();
    m.output_dir = workdir;
  } else {
    m.weights_path = weights;
    std::string source = weights;
    source += ":config";
    m.config = config::parse_config_text(read_weights_config(weights), source, overrides);
    // Results of a bare weights file go beside it.
    std::filesystem::path dir = std::filesystem::path(weights).parent_path();
    m.output_dir = (dir.empty() ? std::filesystem::path(".") : dir).string();
  }
  m.params = std::make_unique<ParameterStore>();
  m.model = std::make_unique<VisionTransformer>(*m.params, vit_config_from(m.config.model()));
  m.params->allocate(0, param_dtype_from(m.config.model()), device_from(m.config.train()));
  load_weights(m.weights_path, *m.params);
  return m;
}

}  // namespace vmoe
