// A trained model loaded back for evaluation or prediction: from a workdir (its
// config.textproto and weights) or from a weights file alone (its stored config).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "configs/config.h"
#include "models/vision_transformer.h"

namespace vmoe {

struct SavedModel {
  config::Config config;
  std::string weights_path;
  std::string output_dir;  // where results go: the workdir, or the weights file's folder
  std::unique_ptr<ParameterStore> params;
  std::unique_ptr<VisionTransformer> model;
};

// Exactly one of workdir / weights must be non-empty.
SavedModel load_saved_model(const std::string& workdir, const std::string& weights,
                            const std::vector<std::string>& overrides);

}  // namespace vmoe
