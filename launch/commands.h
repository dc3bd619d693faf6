// The subcommands of the vmoe binary. Each returns the process exit code and throws on errors
// (main prints them as one line).
#pragma once
#include <string>
#include <vector>

namespace vmoe {

struct TrainArgs {
  std::string config_path;
  std::string workdir;
  std::vector<std::string> overrides;  // "path.to.field=value"
};
int run_train(const TrainArgs& args);

struct EvalArgs {
  std::string workdir;  // uses workdir/config.textproto and workdir/weights.h5
  std::string weights;  // or a weights file (its stored config)
  std::vector<std::string> overrides;
};
int run_eval(const EvalArgs& args);

}  // namespace vmoe
