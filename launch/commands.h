// The subcommands of the vmoe binary. Each returns the process exit code and throws on errors
// (main prints them as one line).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace vmoe {

// How the process was started: its world (a single-process communicator when not under
// mpirun / srun) and how many ranks share this node's cores.
struct LaunchInfo {
  std::shared_ptr<Communicator> world;
  int local_ranks = 1;
};

struct TrainArgs {
  std::string config_path;
  std::string workdir;
  std::vector<std::string> overrides;  // "path.to.field=value"
  std::string from;  // resume from this checkpoint file instead of the workdir's newest
};
int run_train(const TrainArgs& args, const LaunchInfo& launch);

struct EvalArgs {
  std::string workdir;  // uses workdir/config.textproto and workdir/weights.h5
  std::string weights;  // or a weights file (its stored config)
  std::vector<std::string> overrides;
  double capacity_factor = 0;          // test-time capacity; 0 = the config's
  std::string bpr;                     // "on", "off" or "" (the config's)
  std::vector<double> capacity_sweep;  // evaluate vanilla and BPR at each capacity
};
int run_eval(const EvalArgs& args);

struct PredictArgs {
  std::string workdir, weights;
  std::vector<std::string> overrides;
  std::string input;       // HDF5 file with `images` u8 [N, H, W, C], or "test" (the test split)
  int64_t start = 0;       // first example of the input
  int64_t count = 0;       // number of examples (0 = to the end)
  std::string output;      // HDF5 file to write
  int64_t batch_size = 0;  // 0 = data.eval_batch_size
};
int run_predict(const PredictArgs& args);

// `vmoe ckpt ls|verify|diff|stats|export`: tools for checkpoint files (docs/checkpoints.md).
struct CkptArgs {
  std::string command;        // "ls", "verify", "diff", "stats" or "export"
  std::string file;           // the checkpoint (A of diff)
  std::string other;          // diff: checkpoint B; export: the weights file to write
  std::string include;        // export: keep tensors whose name matches this ECMAScript regex
  bool no_optimizer = false;  // export: parameters only
};
int run_ckpt(const CkptArgs& args);

}  // namespace vmoe
