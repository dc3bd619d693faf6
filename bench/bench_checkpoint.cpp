// Benchmark, run plainly or under mpirun: saving and loading a sharded checkpoint of a model
// with `--replicated-mb` of replicated parameters and two stacked expert tensors [E, D, M]
// (plus AdamW's two slots, so the file is three times the parameters). Prints the file size,
// median save and load times and MB/s.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <vector>

#include "core/optim/adamw.h"
#include "parallel/checkpoint.h"
#include "parallel/mpi_runtime.h"

namespace {

using namespace vmoe;

double median_seconds(Communicator& world, int reps, const std::function<void()>& fn) {
  std::vector<double> s;
  for (int i = 0; i < reps; ++i) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    world.barrier();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t experts = 8, dim = 1024, mlp = 2048;
  double replicated_mb = 32;
  int reps = 3;
  std::string dir = "bench_checkpoints";
  CLI::App app{"vmoe checkpoint save/load benchmark"};
  app.add_option("--experts", experts);
  app.add_option("--dim", dim);
  app.add_option("--mlp", mlp);
  app.add_option("--replicated-mb", replicated_mb);
  app.add_option("--reps", reps);
  app.add_option("--dir", dir, "where to write (removed at the end)");
  CLI11_PARSE(app, argc, argv);
  try {
    MpiRuntime runtime;
    const ProcessGroups groups = make_process_groups(runtime.world(), experts);
    ParameterStore params;
    params.declare("replicated", {int64_t(replicated_mb * (1 << 20) / 4)}, InitSpec::normal(1));
    params.declare("experts/fc1", {experts, dim, mlp}, InitSpec::normal(1), WeightDecay::yes,
                   Sharding::expert);
    params.declare("experts/fc2", {experts, mlp, dim}, InitSpec::normal(1), WeightDecay::yes,
                   Sharding::expert);
    params.set_expert_shard(groups.expert_shard());
    params.allocate(1);
    AdamW optimizer(params, {});
    CheckpointInfo info;
    info.position.step = 1;
    info.config_text = "bench";
    info.optimizer = "adamw";
    std::string path;
    const double save = median_seconds(*groups.world, reps, [&] {
      path = save_checkpoint(dir, params, optimizer, "adamw", groups, info, 1);
    });
    const double load =
        median_seconds(*groups.world, reps, [&] { load_checkpoint(path, params, optimizer); });
    const double mb = double(std::filesystem::file_size(path)) / 1e6;
    if (groups.is_root()) {
      std::printf("| %d | %.0f | %.2f | %.0f | %.2f | %.0f |\n", groups.world_size(), mb, save,
                  mb / save, load, mb / load);
      std::filesystem::remove_all(dir);
    }
  } catch (const std::exception& e) {
    abort_job(e.what());
  }
  return 0;
}
