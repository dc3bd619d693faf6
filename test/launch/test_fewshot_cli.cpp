// End-to-end tests of `vmoe eval --fewshot`: the table and fewshot.csv of a tiny trained model,
// determinism from the seed, and one-line errors for impossible shot counts.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "command_runner.h"

namespace fs = std::filesystem;

namespace {

using vmoe::testing::slurp;
using RunResult = vmoe::testing::CommandResult;

using vmoe::testing::run_vmoe;

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";
using vmoe::testing::kTinyRun;

using vmoe::testing::check_one_line_error;

}  // namespace

TEST_CASE("cli: eval --fewshot prints a table, writes fewshot.csv and is deterministic") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = vmoe::testing::scratch_dir("cli_fewshot");
  const fs::path work = dir / "work";
  REQUIRE(run_vmoe("train --config " + kConfig + " --workdir " + work.string() + kTinyRun, dir)
              .exit_code == 0);
  RunResult r = run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("pre-logits of dim 64, 50 train examples drawn (seed 0), 200 test") !=
        std::string::npos);
  const std::string csv = slurp(work / "fewshot.csv");
  std::stringstream lines(csv);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);)
    rows.push_back(line);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == "shots,accuracy,l2_reg,loo_accuracy,best_test_accuracy,best_test_l2_reg");
  for (size_t i = 1; i < 3; ++i) {
    std::stringstream fields(rows[i]);
    std::string shots, acc, l2;
    std::getline(fields, shots, ',');
    std::getline(fields, acc, ',');
    std::getline(fields, l2, ',');
    CHECK(shots == (i == 1 ? "1" : "5"));
    CHECK(std::stod(acc) > 0.1);  // better than chance on 10 classes, even after 3 steps
    CHECK(std::stod(acc) <= 1.0);
    const double lambda = std::stod(l2);
    CHECK(lambda >= 1.0 / 1024);
    CHECK(lambda <= 524288.0);
  }
  // Same seed: the same file; another seed draws other examples.
  REQUIRE(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5", dir).exit_code == 0);
  CHECK(slurp(work / "fewshot.csv") == csv);
  REQUIRE(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,5 --fewshot-seed 3", dir)
              .exit_code == 0);
  CHECK(slurp(work / "fewshot.csv") != csv);

  check_one_line_error(run_vmoe("eval --workdir " + work.string() + " --fewshot 1,200", dir),
                       "examples in the train split, fewer than the 200 shots asked");
  check_one_line_error(run_vmoe("eval --workdir " + work.string() + " --fewshot 0", dir),
                       "--fewshot values must be >= 1, got 0");
  check_one_line_error(
      run_vmoe("eval --workdir " + work.string() + " --fewshot 1 --capacity-sweep 1", dir),
      "--fewshot and --capacity-sweep cannot be combined");
}
