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
  std::string from;       // resume from this checkpoint file instead of the workdir's newest
  std::string init_from;  // a fresh run initialises from this weights file / checkpoint (init.path)
};
int run_train(const TrainArgs& args, const LaunchInfo& launch);

// `vmoe info` (launch/info_command.cpp): the build's features and the devices it sees.
int run_info();

struct EvalArgs {
  std::string workdir;  // uses workdir/config.textproto and workdir/weights.h5
  std::string weights;  // or a weights file (its stored config)
  std::vector<std::string> overrides;
  double capacity_factor = 0;          // test-time capacity; 0 = the config's
  std::string bpr;                     // "on", "off" or "" (the config's)
  std::vector<double> capacity_sweep;  // evaluate vanilla and BPR at each capacity
  std::vector<int64_t> fewshot;        // few-shot linear evaluation at these shot counts
  uint64_t fewshot_seed = 0;           // seed of the permutation the shots are drawn from
  std::string fewshot_features;  // HDF5 file for the drawn train examples' pre-logits ("" = none)
};
int run_eval(const EvalArgs& args);
// `vmoe eval --fewshot 1,5,10,25` (launch/fewshot_eval.cpp): PAPER.md's few-shot evaluation.
int run_fewshot_eval(const EvalArgs& args);

struct PredictArgs {
  std::string workdir, weights;
  std::vector<std::string> overrides;
  std::string input;       // HDF5 file with `images` u8 [N, H, W, C], or "test" (the test split)
  int64_t start = 0;       // first example of the input
  int64_t count = 0;       // number of examples (0 = to the end)
  std::string output;      // HDF5 file to write
  int64_t batch_size = 0;  // 0 = data.eval_batch_size
  double capacity_factor = 0;  // test-time capacity; 0 = the config's
  std::string bpr;             // "on", "off" or "" (the config's)
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

// `vmoe plot WORKDIR`: training curves (and the capacity sweep) as PNGs in WORKDIR/plots/.
struct PlotArgs {
  std::string workdir;
};
int run_plot(const PlotArgs& args);

// `vmoe routing-map`: per-patch first-choice experts of test images in every MoE layer -> PNG.
struct RoutingMapArgs {
  std::string workdir, weights;
  std::vector<std::string> overrides;
  std::vector<int64_t> images{0, 1, 2, 3};  // test-split indices, one row each
  std::string output;                       // PNG (default: the workdir's routing_map.png)
  std::string data;            // CSV of image,block,patch,row,col,expert,kept ("" = none)
  double capacity_factor = 0;  // test-time capacity; 0 = the config's
  std::string bpr;             // "on", "off" or "" (the config's)
};
int run_routing_map(const RoutingMapArgs& args);

// `vmoe data pack KIND SRC DST` and `vmoe data inspect PATH` (launch/data_command.cpp).
struct DataArgs {
  std::string command;  // "pack" or "inspect"
  std::string kind;     // idx, cifar10, cifar100, folder (pack), or h5; "" = detect (inspect)
  std::string src;      // a dataset directory, an image folder root or a shard file
  std::string dst;      // pack: the HDF5 shard to write
  std::string split = "train";  // idx / cifar: which split
  int64_t channels = 0;         // image folders: 1 or 3 (0 = 3); others: must match (0 = any)
  int64_t image_size = 0;       // pack: every image must be this square size (0 = the first's)
  std::string grid;             // inspect: PNG of sample images to write ("" = none)
  int64_t grid_side = 8;        // inspect: the grid holds up to grid_side x grid_side images
};
int run_data(const DataArgs& args);

// `vmoe plan` (launch/plan_command.cpp, docs/planning.md): what a config costs on P ranks.
struct PlanArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  int world_size = 1;
  int64_t batch = 0;         // 0 = data.batch_size
  int64_t microbatches = 0;  // per rank per step; 0 = train.microbatches
  std::string precision;     // "f32", "bf16" or "" (train.precision)
  std::string recompute;     // "none", "blocks" or "" (model.recompute)
  double device_memory_gib = 141e9 / double(int64_t(1) << 30);  // an H200's 141 GB
  bool json = false;
  bool allocate = false;  // --allocate-rank given: allocate that rank's share of the store
  int allocate_rank = 0;
};
int run_plan(const PlanArgs& args);

// `vmoe bench train` (launch/bench_command.cpp): training steps of a config on random data.
struct BenchArgs {
  std::string config_path;
  std::vector<std::string> overrides;
  int64_t steps = 10, warmup = 3;
  int64_t batch = 0;          // 0 = data.batch_size
  int64_t gemm_size = 1024;   // n of the n x n x n GEMM whose rate the step is compared with
  int64_t profile_steps = 0;  // > 0: as many more steps with every kernel timed
  bool json = false;
};
int run_bench_train(const BenchArgs& args);

// `vmoe upcycle` (launch/upcycle_command.cpp, docs/transfer.md): a V-MoE config initialised from
// a dense ViT's weights (init preset UPCYCLE), written as a weights file.
struct UpcycleArgs {
  std::string from;         // the dense model's weights file or checkpoint
  std::string config_path;  // the V-MoE config
  std::vector<std::string> overrides;
  std::string output;  // the weights file to write
};
int run_upcycle(const UpcycleArgs& args);

}  // namespace vmoe
