// Running the vmoe binary from tests: an emptied scratch folder per test, and a shell command
// with stdout and stderr captured in files there.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace vmoe::testing {

struct CommandResult {
  int exit_code;
  std::string out, err;
  double seconds;  // wall time
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// TMPDIR/vmoe_test_<name>, empty.
inline std::filesystem::path scratch_dir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("vmoe_test_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs `command` (no stdin) with its output in dir/stdout.txt and dir/stderr.txt.
inline CommandResult run_command(const std::string& command, const std::filesystem::path& dir) {
  const std::filesystem::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string cmd = command + " >" + out.string() + " 2>" + err.string() + " </dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err), s};
}

// `vmoe ARGS` for the suite's device: when VMOE_TEST_DEVICE is cpu_strict, the subcommands
// that run a model get --set train.device=CPU_STRICT (an explicit train.device in ARGS, which
// comes first, is overridden only where none is given).
inline std::string with_test_device(const std::string& args) {
  const char* device = std::getenv("VMOE_TEST_DEVICE");
  if (!device || std::string(device) != "cpu_strict") return args;
  if (args.find("train.device=") != std::string::npos) return args;
  const std::string command = args.substr(0, args.find(' '));
  for (const char* runs_model : {"train", "eval", "predict", "routing-map"})
    if (command == runs_model) return args + " --set train.device=CPU_STRICT";
  return args;
}

#ifdef VMOE_BINARY
// Runs `vmoe ARGS` (the binary under test) with its output captured in `dir`.
inline CommandResult run_vmoe(const std::string& args, const std::filesystem::path& dir) {
  return run_command(std::string(VMOE_BINARY) + " " + with_test_device(args), dir);
}
#endif

// Overrides for a quick training run: 3 steps of a 2-layer model on 256 images (at least 5 of
// each class), evaluated on 200.
inline const std::string kTinyRun =
    " --set train.num_steps=3 --set data.num_train_examples=256 --set eval.num_examples=200"
    " --set model.num_layers=2 --set data.batch_size=32 --set output.progress=NONE";

// The error is exactly one line starting with "vmoe: error:" and containing `what`, exit 1.
inline void check_one_line_error(const CommandResult& r, const std::string& what) {
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("vmoe: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find(what) != std::string::npos);
}

}  // namespace vmoe::testing
