// End-to-end tests of the vmoe binary: a tiny training run and evaluation, and the one-line
// errors (exit code 1) for bad input.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct RunResult {
  int exit_code;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("vmoe_test_cli_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Runs `vmoe ARGS` with stdout and stderr captured in files.
RunResult run_vmoe(const std::string& args, const fs::path& dir) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = std::string(VMOE_BINARY) + " " + args + " >" + out.string() + " 2>" +
                          err.string() + " </dev/null";
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
}

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";

// Small and fast: 3 steps on 256 images, a 2-layer model, evaluation on 200 images.
const std::string kTiny =
    " --set train.num_steps=3 --set data.num_train_examples=256 --set eval.num_examples=200"
    " --set model.num_layers=2 --set data.batch_size=32 --set output.progress=NONE";

// The error is exactly one line starting with "vmoe: error:" and containing `what`.
void check_one_line_error(const RunResult& r, const std::string& what) {
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("vmoe: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find(what) != std::string::npos);
}

}  // namespace

TEST_CASE("cli: train writes metrics, config and weights; eval reproduces the accuracy") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("train");
  const fs::path work = dir / "work";
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + work.string() + kTiny, dir);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("test accuracy: ") != std::string::npos);
  CHECK(fs::exists(work / "config.textproto"));
  CHECK(fs::exists(work / "weights.h5"));
  // Every metrics line is JSON with a step; the last is the final evaluation.
  std::ifstream metrics(work / "metrics.jsonl");
  std::string line;
  nlohmann::json last;
  int lines = 0;
  while (std::getline(metrics, line)) {
    last = nlohmann::json::parse(line);
    CHECK(last.contains("step"));
    ++lines;
  }
  CHECK(lines >= 2);
  CHECK(last["step"] == 3);
  REQUIRE(last.contains("eval/accuracy"));
  const double accuracy = last["eval/accuracy"];
  // eval from the workdir and from the weights file alone print the same accuracy.
  char expected[64];
  std::snprintf(expected, sizeof expected, "test accuracy: %.2f%% (200 images)", 100 * accuracy);
  RunResult e1 = run_vmoe("eval --workdir " + work.string(), dir);
  INFO("eval stderr: " << e1.err);
  CHECK(e1.exit_code == 0);
  CHECK(e1.out.find(expected) != std::string::npos);
  RunResult e2 = run_vmoe("eval --weights " + (work / "weights.h5").string(), dir);
  CHECK(e2.exit_code == 0);
  CHECK(e2.out.find(expected) != std::string::npos);
}

TEST_CASE("cli: a missing dataset file is a one-line error naming the file") {
  const fs::path dir = scratch("missing_data");
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w").string() +
                             kTiny + " --set data.dir=" + (dir / "nodata").string(),
                         dir);
  check_one_line_error(r, (dir / "nodata").string());
}

TEST_CASE("cli: a malformed config is a one-line error with file and line") {
  const fs::path dir = scratch("malformed");
  std::ofstream(dir / "bad.textproto") << "name: \"x\"\nmodel {\n  hidden_size: 64\n";
  RunResult r = run_vmoe(
      "train --config " + (dir / "bad.textproto").string() + " --workdir " + (dir / "w").string(),
      dir);
  check_one_line_error(r, (dir / "bad.textproto").string() + ":");
}

TEST_CASE("cli: an unknown field is a one-line error naming it and its line") {
  const fs::path dir = scratch("unknown_field");
  std::ofstream(dir / "bad.textproto") << "name: \"x\"\nmodel {\n  hiden_size: 64\n}\n";
  RunResult r = run_vmoe(
      "train --config " + (dir / "bad.textproto").string() + " --workdir " + (dir / "w").string(),
      dir);
  check_one_line_error(r, "bad.textproto:3:");
  CHECK(r.err.find("hiden_size") != std::string::npos);
}

TEST_CASE("cli: a bad override value and an unknown override path are one-line errors") {
  const fs::path dir = scratch("bad_override");
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w").string() +
                             " --set model.hidden_size=abc",
                         dir);
  check_one_line_error(r, "model.hidden_size");
  r = run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w").string() +
                   " --set model.hiden_size=3",
               dir);
  check_one_line_error(r, "hiden_size");
}

TEST_CASE("cli: a model that does not match the data is a one-line error") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("shape");
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w").string() +
                             kTiny + " --set model.image_size=32",
                         dir);
  check_one_line_error(r, "model expects 32x32x1");
}

TEST_CASE("cli: an unwritable workdir is a one-line error naming it") {
  const fs::path dir = scratch("workdir");
  std::ofstream(dir / "file") << "not a directory";
  const std::string workdir = (dir / "file" / "run").string();
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + workdir + kTiny, dir);
  check_one_line_error(r, workdir);
}

TEST_CASE("cli: eval of a missing weights file is a one-line error") {
  const fs::path dir = scratch("eval_missing");
  RunResult r = run_vmoe("eval --weights " + (dir / "none.h5").string(), dir);
  check_one_line_error(r, "none.h5");
}
