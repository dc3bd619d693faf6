// End-to-end tests of the vmoe binary: a tiny training run and evaluation, and the one-line
// errors (exit code 1) for bad input.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "command_runner.h"
#include "core/cpu/blas_kernels.h"
#include "vmoe_build_features.h"

namespace fs = std::filesystem;

namespace {

using vmoe::testing::slurp;
using RunResult = vmoe::testing::CommandResult;

fs::path scratch(const std::string& name) {
  return vmoe::testing::scratch_dir("cli_" + name);
}

using vmoe::testing::run_command;
using vmoe::testing::run_vmoe;

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vit_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";

using vmoe::testing::kTinyRun;

using vmoe::testing::check_one_line_error;

}  // namespace

TEST_CASE("cli: train writes metrics, config and weights, and eval reproduces the accuracy") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("train");
  const fs::path work = dir / "work";
  RunResult r =
      run_vmoe("train --config " + kConfig + " --workdir " + work.string() + kTinyRun, dir);
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
                             kTinyRun + " --set data.dir=" + (dir / "nodata").string(),
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
                             kTinyRun + " --set model.image_size=32",
                         dir);
  check_one_line_error(r, "model expects 32x32x1");
}

TEST_CASE("cli: an unwritable workdir is a one-line error naming it") {
  const fs::path dir = scratch("workdir");
  std::ofstream(dir / "file") << "not a directory";
  const std::string workdir = (dir / "file" / "run").string();
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + workdir + kTinyRun, dir);
  check_one_line_error(r, workdir);
}

TEST_CASE("cli: command-line errors are one vmoe error line, exit 1") {
  const fs::path dir = scratch("usage");
  check_one_line_error(run_vmoe("plot --bogus x", dir), "--bogus");
  check_one_line_error(run_vmoe("", dir), "subcommand");
  check_one_line_error(run_vmoe("predict --count x --output o.h5", dir), "--count");
}

TEST_CASE("cli: error lines escape control characters and cut long input") {
  const fs::path dir = scratch("long_input");
  // A workdir name of 5000 characters with a newline in it: one short line, the length named.
  const std::string name = "x\ny" + std::string(5000, 'a');
  RunResult r = run_vmoe("plot '" + (dir / name).string() + "'", dir);
  check_one_line_error(r, "metrics.jsonl");
  CHECK(r.err.size() < 400);
  CHECK(r.err.find("x\\ny") != std::string::npos);
  CHECK(r.err.find("bytes)") != std::string::npos);
}

// A shell prefix that caps the memory of the command after it to about 1.5 GB. Under
// AddressSanitizer, which reserves terabytes of address space for its shadow memory, `ulimit -v`
// kills every process at start: there the sanitizer's allocator refuses any single allocation
// over 1.4 GB instead (and returns null, so that operator new throws as it does in production).
#if defined(__SANITIZE_ADDRESS__)
const std::string kMemoryCap =
    "export "
    "ASAN_OPTIONS=\"$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=1400\"; ";
#else
const std::string kMemoryCap = "ulimit -v 1500000; ";
#endif

TEST_CASE("cli: running out of memory is a one-line error naming the allocation") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("out_of_memory");
  // 1.5 GB of address space cannot hold a 2-layer model of width 8192 with MLPs of 65536.
  RunResult r = vmoe::testing::run_command(
      kMemoryCap + std::string(VMOE_BINARY) + " train --config " + kConfig + " --workdir " +
          (dir / "w").string() + kTinyRun +
          " --set model.hidden_size=8192 --set model.mlp_dim=65536 --set model.num_heads=8",
      dir);
#if defined(__SANITIZE_ADDRESS__)
  // ASan notes each allocation it refuses on stderr before returning null: not vmoe's output.
  r.err = std::regex_replace(
      r.err, std::regex("==[0-9]+==WARNING: AddressSanitizer failed to allocate[^\n]*\n"), "");
#endif
  check_one_line_error(r, "cannot allocate");
  CHECK(r.err.find("GiB") != std::string::npos);
  CHECK(r.err.find("on cpu") != std::string::npos);
}

TEST_CASE("cli: eval of a missing weights file is a one-line error") {
  const fs::path dir = scratch("eval_missing");
  RunResult r = run_vmoe("eval --weights " + (dir / "none.h5").string(), dir);
  check_one_line_error(r, "none.h5");
}

namespace {

const std::string kMoeConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
// 2 images per routing group so that the 200 evaluation images form whole groups.
const std::string kTinyMoe = kTinyRun + " --set model.moe.images_per_group=2";

}  // namespace

TEST_CASE("cli: V-MoE trains, logs per-layer routing metrics and sweeps test-time capacity") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("moe");
  const fs::path work = dir / "work";
  RunResult r =
      run_vmoe("train --config " + kMoeConfig + " --workdir " + work.string() + kTinyMoe, dir);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  std::ifstream metrics(work / "metrics.jsonl");
  nlohmann::json first = nlohmann::json::parse([&] {
    std::string l;
    std::getline(metrics, l);
    return l;
  }());
  // kTinyRun keeps 2 blocks: Every-2 puts the one MoE layer in block 1.
  CHECK_FALSE(first.contains("moe/block_03/dropped_fraction"));
  for (const char* key :
       {"train/aux_loss", "moe/block_01/importance_loss", "moe/block_01/load_loss",
        "moe/block_01/dropped_fraction", "moe/block_01/load_max_over_mean"}) {
    INFO(key);
    CHECK(first.contains(key));
  }
  // A single test-time capacity with BPR.
  RunResult e =
      run_vmoe("eval --workdir " + work.string() + " --capacity-factor 0.5 --bpr on", dir);
  INFO("eval stderr: " << e.err);
  CHECK(e.exit_code == 0);
  CHECK(e.out.find("GFLOPs/image") != std::string::npos);
  // The sweep writes one CSV row per capacity and routing; lower capacity -> fewer FLOPs.
  RunResult s = run_vmoe("eval --workdir " + work.string() + " --capacity-sweep 0.25,1.0", dir);
  INFO("sweep stderr: " << s.err);
  REQUIRE(s.exit_code == 0);
  std::ifstream csv(work / "capacity_sweep.csv");
  std::vector<std::string> rows;
  for (std::string l; std::getline(csv, l);)
    rows.push_back(l);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "capacity_factor,routing,accuracy,loss,moe_gflops_per_image,dropped_fraction");
  CHECK(rows[1].rfind("0.25,vanilla,", 0) == 0);
  CHECK(rows[2].rfind("0.25,bpr,", 0) == 0);
  CHECK(rows[4].rfind("1,bpr,", 0) == 0);
  auto flops = [](const std::string& row) {
    std::vector<std::string> f;
    std::stringstream ss(row);
    for (std::string c; std::getline(ss, c, ',');)
      f.push_back(c);
    return std::stod(f.at(4));
  };
  CHECK(flops(rows[1]) < flops(rows[3]));
}

TEST_CASE("cli: predict writes logits, pre-logits and every MoE layer's routing") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("predict");
  const fs::path work = dir / "work";
  REQUIRE(run_vmoe("train --config " + kMoeConfig + " --workdir " + work.string() + kTinyMoe, dir)
              .exit_code == 0);
  const fs::path out = dir / "pred.h5";
  RunResult p = run_vmoe("predict --workdir " + work.string() +
                             " --input test --start 4 --count 6 "
                             "--output " +
                             out.string(),
                         dir);
  INFO("stderr: " << p.err);
  REQUIRE(p.exit_code == 0);
  CHECK(p.out.find("predicted 6 images") != std::string::npos);
  const std::string listing = [&] {
    const std::string cmd = "h5ls -r " + out.string() + " > " + (dir / "ls.txt").string();
    REQUIRE(std::system(cmd.c_str()) == 0);
    return slurp(dir / "ls.txt");
  }();
  // h5ls -r prints "NAME  Dataset {DIMS}" per dataset.
  std::map<std::string, std::string> dims;
  std::stringstream ls(listing);
  for (std::string line; std::getline(ls, line);) {
    std::stringstream fields(line);
    std::string name, kind;
    fields >> name >> kind;
    if (kind == "Dataset") dims[name] = line.substr(line.find('{'));
  }
  INFO(listing);
  CHECK(dims["/logits"] == "{6, 10}");
  CHECK(dims["/pre_logits"] == "{6, 64}");
  CHECK(dims["/predictions"] == "{6}");
  CHECK(dims["/moe/block_01/experts"] == "{6, 50, 2}");
  CHECK(dims["/moe/block_01/weights"] == "{6, 50, 2}");
  CHECK(dims["/moe/block_01/kept"] == "{6, 50, 2}");
  CHECK(dims["/moe/block_01/expert_load"] == "{8}");
  CHECK(dims.count("/moe/block_03/kept") == 0);  // 2 blocks: the only MoE layer is block 1

  // --capacity-factor and --bpr as in `vmoe eval`: a low test-time capacity drops choices that
  // the config's capacity kept.
  auto dropped = [&](const std::string& flags, const std::string& file) {
    RunResult q = run_vmoe("predict --workdir " + work.string() + " --start 4 --count 6 --output " +
                               (dir / file).string() + flags,
                           dir);
    INFO("stderr: " << q.err);
    REQUIRE(q.exit_code == 0);
    const std::string cmd = "h5dump -y -w 0 -d /moe/block_01/kept -o " +
                            (dir / (file + ".txt")).string() + " " + (dir / file).string() +
                            " > /dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    const std::string values = slurp(dir / (file + ".txt"));
    int zeros = 0;
    for (size_t i = 0; i < values.size(); ++i)
      zeros +=
          values[i] == '0' && (i == 0 || !std::isdigit(static_cast<unsigned char>(values[i - 1])));
    return zeros;
  };
  const int at_config = dropped("", "config.h5");
  const int low = dropped(" --capacity-factor 0.25 --bpr on", "low.h5");
  CHECK(low > at_config);
  CHECK(low > 0);
}

TEST_CASE("cli: test-time capacity options need a V-MoE and valid values") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("capacity_errors");
  const fs::path work = dir / "work";
  REQUIRE(run_vmoe("train --config " + kConfig + " --workdir " + work.string() + kTinyRun, dir)
              .exit_code == 0);
  check_one_line_error(run_vmoe("eval --workdir " + work.string() + " --capacity-factor 0.5", dir),
                       "need a V-MoE model");
  RunResult bad = run_vmoe("eval --workdir " + work.string() + " --bpr maybe", dir);
  CHECK(bad.exit_code != 0);
  // predict takes the same options, with the same checks.
  const std::string predict =
      "predict --workdir " + work.string() + " --output " + (dir / "p.h5").string();
  check_one_line_error(run_vmoe(predict + " --capacity-factor 0.5", dir), "need a V-MoE model");
  check_one_line_error(run_vmoe(predict + " --bpr maybe", dir), "--bpr");
}

TEST_CASE("cli: mixup trains with soft targets, and is refused with the sigmoid loss") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const fs::path dir = scratch("mixup");
  RunResult r = run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w").string() +
                             kTinyRun + " --set data.mixup_alpha=0.2",
                         dir);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("test accuracy: ") != std::string::npos);
  check_one_line_error(
      run_vmoe("train --config " + kConfig + " --workdir " + (dir / "w2").string() + kTinyRun +
                   " --set data.mixup_alpha=0.2 --set train.loss=SIGMOID_XENT",
               dir),
      "data.mixup_alpha > 0 needs train.loss SOFTMAX_XENT");
}

TEST_CASE("cli: info names the BLAS kernels, and the user's OPENBLAS_CORETYPE stands") {
  const fs::path dir = scratch("info_blas");
  // Unset: OpenBLAS's own choice, or this CPU's best where that lacked AVX2 (the re-exec).
  RunResult r = run_command("env -u OPENBLAS_CORETYPE " + std::string(VMOE_BINARY) + " info", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const std::string best = vmoe::cpu::openblas_core_for_cpu();
  const std::string tail = " kernels of OpenBLAS (this CPU's best: " + best + ")\n";
  const size_t at = r.out.find("  blas: ");
  REQUIRE(at != std::string::npos);
  const size_t end = r.out.find(tail, at);
  REQUIRE(end != std::string::npos);
  const std::string loaded = r.out.substr(at + 8, end - at - 8);
  if (!best.empty()) CHECK(vmoe::cpu::is_avx2_core(loaded));
  // Set: no re-exec, whatever the CPU.
  r = run_command("OPENBLAS_CORETYPE=Prescott " + std::string(VMOE_BINARY) + " info", dir);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("  blas: Prescott kernels of OpenBLAS") != std::string::npos);
}

TEST_CASE("cli: info prints the build's features and the devices it sees") {
  const fs::path dir = scratch("info");
  RunResult r = run_vmoe("info", dir);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(r.out.rfind("vmoe " VMOE_VERSION " (", 0) == 0);
#if VMOE_WITH_CUDA
  CHECK(r.out.find("  cuda: on (nvcc " VMOE_CUDA_COMPILER_VERSION
                   ", architectures " VMOE_CUDA_ARCHITECTURES "), cuDNN " VMOE_CUDNN_VERSION
                   ", NCCL " VMOE_NCCL_VERSION "\n") != std::string::npos);
  // Either the devices, one line each, or one line saying why there are none.
  const bool devices = r.out.find("  cuda:0: ") != std::string::npos;
  const bool none = r.out.find("  cuda: no device (") != std::string::npos;
  CHECK(devices != none);
#else
  CHECK(r.out.find("  cuda: off (") != std::string::npos);
#endif
  CHECK(r.out.find("  mpi: ") != std::string::npos);
  CHECK(r.out.find("  hdf5: ") != std::string::npos);
  CHECK(r.out.find(", parallel\n") != std::string::npos);
  CHECK(r.out.find("  cpu: " + std::to_string(std::thread::hardware_concurrency()) +
                   " hardware threads") != std::string::npos);
}
