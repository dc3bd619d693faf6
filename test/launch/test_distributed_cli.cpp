// `vmoe train` under mpirun: the same model on 1, 2 and 4 ranks (losses, routing statistics,
// final weights), layout errors, and one rank's failure ending the whole job quickly.

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_runner.h"

namespace fs = std::filesystem;

namespace {

using RunResult = vmoe::testing::CommandResult;

fs::path scratch(const std::string& name) {
  return vmoe::testing::scratch_dir("distributed_" + name);
}

// Runs `vmoe ARGS` on `ranks` MPI ranks (0 = plainly, without mpirun).
RunResult run_vmoe(int ranks, const std::string& args, const fs::path& dir,
                   const std::string& env = "") {
  std::string launcher;
  if (ranks > 0) {
    launcher = std::string(VMOE_MPIEXEC) + " -n " + std::to_string(ranks) +
               " --oversubscribe --allow-run-as-root --bind-to none -x OMP_NUM_THREADS=1 " +
               "-x OPENBLAS_NUM_THREADS=1 ";
    if (!env.empty()) launcher += "-x " + env + " ";
  }
  return vmoe::testing::run_command(
      launcher + VMOE_BINARY + " " + vmoe::testing::with_test_device(args), dir);
}

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";

// Per-step training metrics of a metrics.jsonl.
std::vector<nlohmann::json> train_lines(const fs::path& metrics) {
  std::vector<nlohmann::json> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("train/loss")) out.push_back(j);
  }
  return out;
}

// Lines of vmoe's own error output ("vmoe: error: ..."), whatever mpirun adds around them.
int count_error_lines(const std::string& err) {
  int n = 0;
  for (size_t at = err.find("vmoe: error:"); at != std::string::npos;
       at = err.find("vmoe: error:", at + 1))
    ++n;
  return n;
}

}  // namespace

TEST_CASE(
    "device: 20 steps of fashion_vmoe_ti give the same losses on the CPU and the strict device") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const std::string args = " --config " + kConfig +
                           " --set train.num_steps=20 --set train.log_every_steps=1"
                           " --set eval.num_examples=64 --set output.progress=NONE";
  for (int ranks : {0, 2}) {
    std::vector<std::vector<nlohmann::json>> runs;
    for (const char* device : {"CPU", "CPU_STRICT"}) {
      CAPTURE(ranks, device);
      const fs::path dir = scratch(std::string("device_") + device + std::to_string(ranks));
      RunResult r = run_vmoe(
          ranks, "train --workdir " + (dir / "w").string() + args + " --set train.device=" + device,
          dir);
      INFO("stderr: " << r.err);
      REQUIRE(r.exit_code == 0);
      runs.push_back(train_lines(dir / "w" / "metrics.jsonl"));
      REQUIRE(runs.back().size() == 20);
    }
    for (size_t step = 0; step < 20; ++step) {
      for (const char* key :
           {"train/loss", "train/aux_loss", "train/grad_norm", "moe/block_03/dropped_fraction"}) {
        CAPTURE(ranks, step, key);
        const double a = runs[0][step].at(key), b = runs[1][step].at(key);
        CHECK(std::abs(a - b) <= 1e-6 * std::abs(a));
      }
    }
  }
}

TEST_CASE("distributed: 20 steps of fashion_vmoe_ti on 1, 2 and 4 ranks are the same run") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  // 520 test images: evaluation batches of 500 and 20, the last too small to give each of 4
  // ranks a routing group of 8 (ranks without images still take part in the exchange).
  const std::string args = " --config " + kConfig +
                           " --set train.num_steps=20 --set train.log_every_steps=1"
                           " --set eval.num_examples=520 --set output.progress=NONE";
  std::vector<std::vector<nlohmann::json>> runs;
  std::vector<std::string> accuracy_lines;
  std::vector<double> distributed_accuracy;
  for (int ranks : {0, 2, 4}) {
    CAPTURE(ranks);
    const fs::path dir = scratch("same_run_" + std::to_string(ranks));
    RunResult r = run_vmoe(ranks, "train --workdir " + (dir / "w").string() + args, dir);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    runs.push_back(train_lines(dir / "w" / "metrics.jsonl"));
    REQUIRE(runs.back().size() == 20);
    std::ifstream metrics(dir / "w" / "metrics.jsonl");
    std::string last, line;
    while (std::getline(metrics, line))
      last = line;
    const nlohmann::json final_eval = nlohmann::json::parse(last);
    CHECK(final_eval.at("eval/examples") == 520);
    distributed_accuracy.push_back(final_eval.at("eval/accuracy"));
    // The gathered weights evaluate to the same accuracy in one process.
    RunResult e = run_vmoe(
        0, "eval --weights " + (dir / "w" / "weights.h5").string() + " --set eval.num_examples=520",
        dir);
    INFO("eval stderr: " << e.err);
    REQUIRE(e.exit_code == 0);
    accuracy_lines.push_back(e.out.substr(0, e.out.find('\n')));
  }
  const std::vector<std::string> keys = {"train/loss",
                                         "train/aux_loss",
                                         "train/grad_norm",
                                         "moe/block_01/importance_loss",
                                         "moe/block_01/load_loss",
                                         "moe/block_03/load_loss",
                                         "moe/block_01/dropped_fraction",
                                         "moe/block_03/dropped_fraction",
                                         "moe/block_01/load_max_over_mean",
                                         "moe/block_03/load_max_over_mean"};
  for (size_t run = 1; run < runs.size(); ++run) {
    for (size_t step = 0; step < 20; ++step) {
      for (const std::string& key : keys) {
        CAPTURE(run, step, key);
        const double a = runs[0][step].at(key), b = runs[run][step].at(key);
        CHECK(std::abs(a - b) <= 1e-4 * std::max(std::abs(a), 1e-3));
      }
    }
    CHECK(accuracy_lines[run] == accuracy_lines[0]);
    CHECK(distributed_accuracy[run] == distributed_accuracy[0]);
  }
}

TEST_CASE("distributed: an error on one rank ends a 4-rank job within seconds with its message") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("failure");
  RunResult r = run_vmoe(4,
                         "train --workdir " + (dir / "w").string() + " --config " + kConfig +
                             " --set train.num_steps=1000 --set output.progress=NONE",
                         dir, "VMOE_TEST_FAIL_AT=2:3");
  INFO("stderr: " << r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("vmoe: error: [rank 2/4] injected failure at step 3") != std::string::npos);
  // Printed once, by the failing rank: the ranks that its abort ends stay silent.
  CHECK(count_error_lines(r.err) == 1);
  CHECK(r.seconds < 10.0);
}

TEST_CASE("distributed: an error that every rank hits is printed once") {
  const fs::path dir = scratch("same_error");
  // Every rank reads the same config and fails alike: rank 0 reports, the others stay silent.
  RunResult r = run_vmoe(3,
                         "train --workdir " + (dir / "w").string() + " --config " + kConfig +
                             " --set model.hidden_size=abc",
                         dir);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code != 0);
  CHECK(count_error_lines(r.err) == 1);
  CHECK(r.err.find("vmoe: error: [rank 0/3] ") != std::string::npos);
  // A command-line error under mpirun (before MPI starts): one line as well.
  RunResult usage = run_vmoe(3, "train --bogus", dir);
  INFO("stderr: " << usage.err);
  CHECK(usage.exit_code != 0);
  CHECK(count_error_lines(usage.err) == 1);
}

TEST_CASE("distributed: layouts that cannot work are clear errors at start") {
  const fs::path dir = scratch("layout");
  const std::string base = "train --workdir " + (dir / "w").string() + " --config " + kConfig;
  RunResult three = run_vmoe(3, base, dir);
  CHECK(three.exit_code != 0);
  CHECK(three.err.find("8 experts (model.moe.num_experts) cannot be split evenly over an expert "
                       "group of 3 ranks") != std::string::npos);
  RunResult groups = run_vmoe(2, base + " --set data.batch_size=136", dir);
  CHECK(groups.exit_code != 0);
  CHECK(groups.err.find("68 images per rank, not a whole number of routing groups of 8") !=
        std::string::npos);
}
