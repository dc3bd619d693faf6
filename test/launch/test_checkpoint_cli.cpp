// Training checkpoints end to end through `vmoe train`: bit-exact resume at 1 and 2 ranks,
// resharding 4 -> 2 -> 1 and 1 -> 4, kill -9 while saving, damaged files skipped with a
// warning, SIGTERM saving and exiting 0, and a checkpoint of another model refused.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"
#include "parallel/checkpoint.h"

namespace fs = std::filesystem;
using vmoe::testing::CommandResult;

namespace {

const std::string kConfig =
    std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";
// Short runs: a checkpoint every 4 steps, small evaluation, no time-based saves.
const std::string kShort =
    " --set checkpoint.every_steps=4 --set checkpoint.every_minutes=0 --set checkpoint.keep=0"
    " --set eval.num_examples=128 --set output.progress=NONE --set train.log_every_steps=1";

std::string launcher(int ranks) {
  if (ranks == 0) return "";
  return std::string(VMOE_MPIEXEC) + " -n " + std::to_string(ranks) +
         " --oversubscribe --allow-run-as-root --bind-to none -x OMP_NUM_THREADS=1 ";
}

CommandResult train(int ranks, const fs::path& work, int steps, const std::string& extra = "") {
  return vmoe::testing::run_command(
      launcher(ranks) + VMOE_BINARY + " " +
          vmoe::testing::with_test_device(
              "train --config " + kConfig + " --workdir " + work.string() + kShort +
              " --set train.num_steps=" + std::to_string(steps) + extra),
      work.parent_path());
}

fs::path checkpoint(const fs::path& work, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "ckpt_%08d.h5", step);
  return work / "checkpoints" / name;
}

// Largest relative difference over every tensor of two checkpoints (0 = bit for bit equal
// values); every tensor must be in both.
double max_rel_difference(const fs::path& a, const fs::path& b) {
  vmoe::Hdf5File fa(a.string(), vmoe::Hdf5File::Mode::Read);
  vmoe::Hdf5File fb(b.string(), vmoe::Hdf5File::Mode::Read);
  REQUIRE(fa.list() == fb.list());
  double worst = 0;
  for (const std::string& name : fa.list()) {
    const vmoe::H5Array x = fa.read(name), y = fb.read(name);
    REQUIRE(x.type == vmoe::H5Type::f32);
    REQUIRE(x.shape == y.shape);
    const auto* px = reinterpret_cast<const float*>(x.bytes.data());
    const auto* py = reinterpret_cast<const float*>(y.bytes.data());
    double scale = 1e-6, diff = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      scale = std::max(scale, double(std::abs(py[i])));
      diff = std::max(diff, double(std::abs(px[i] - py[i])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

std::vector<double> losses(const fs::path& work) {
  std::vector<double> out;
  std::ifstream in(work / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("train/loss")) out.push_back(j.at("train/loss"));
  }
  return out;
}

fs::path fresh(const std::string& name) {
  return vmoe::testing::scratch_dir("ckpt_" + name) / "w";
}

#define SKIP_WITHOUT_DATA()                       \
  if (!fs::exists(kData)) {                       \
    WARN("Fashion-MNIST not installed; skipped"); \
    return;                                       \
  }

}  // namespace

TEST_CASE(
    "checkpoint: N steps + save + resume + N steps == 2N steps, bit for bit (1 and 2 ranks)") {
  SKIP_WITHOUT_DATA();
  for (int ranks : {0, 2}) {
    CAPTURE(ranks);
    const fs::path straight = fresh("straight_" + std::to_string(ranks));
    REQUIRE(train(ranks, straight, 8).exit_code == 0);
    const fs::path resumed = fresh("resumed_" + std::to_string(ranks));
    REQUIRE(train(ranks, resumed, 4).exit_code == 0);  // saves step 4 (periodic and final)
    CommandResult r = train(ranks, resumed, 8);
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("resuming from " + checkpoint(resumed, 4).string()) != std::string::npos);
    CHECK(max_rel_difference(checkpoint(straight, 8), checkpoint(resumed, 8)) == 0.0);
    CHECK(losses(resumed) == losses(straight));  // the metrics file continues the same run
  }
}

TEST_CASE("checkpoint: resharding 4 -> 2 -> 1 and 1 -> 4 continues the straight run") {
  SKIP_WITHOUT_DATA();
  const fs::path straight = fresh("reshard_straight");
  REQUIRE(train(0, straight, 12).exit_code == 0);
  const fs::path down = fresh("reshard_down");
  REQUIRE(train(4, down, 4).exit_code == 0);
  REQUIRE(train(2, down, 8).exit_code == 0);
  CommandResult last = train(0, down, 12);
  INFO("stderr: " << last.err);
  REQUIRE(last.exit_code == 0);
  CHECK(max_rel_difference(checkpoint(straight, 12), checkpoint(down, 12)) < 2e-3);
  const fs::path up = fresh("reshard_up");
  REQUIRE(train(0, up, 4).exit_code == 0);
  REQUIRE(train(4, up, 12).exit_code == 0);
  CHECK(max_rel_difference(checkpoint(straight, 12), checkpoint(up, 12)) < 2e-3);
  for (const fs::path& w : {down, up}) {
    const std::vector<double> a = losses(straight), b = losses(w);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      CHECK(b[i] == Approx(a[i]).epsilon(1e-4));
  }
}

namespace {

// Starts `vmoe ARGS` (output discarded) and returns its pid.
pid_t spawn_vmoe(const std::vector<std::string>& args) {
  std::vector<std::string> all{VMOE_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, VMOE_BINARY, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return pid;
}

bool has_tmp_file(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".tmp") return true;
  return false;
}

}  // namespace

TEST_CASE("checkpoint: kill -9 at moments during saving leaves the previous checkpoint loadable") {
  SKIP_WITHOUT_DATA();
  // A wider model (127 MB per checkpoint with Adam state, about 0.2-0.5 s to save), saved
  // after every step. Each run is killed a chosen time after a save started (its .tmp file
  // appeared): while tensors are written, while the metadata is added, around the rename.
  const std::vector<std::string> args = {"train",
                                         "--config",
                                         kConfig,
                                         "--set",
                                         "model.hidden_size=256",
                                         "--set",
                                         "model.mlp_dim=1024",
                                         "--set",
                                         "checkpoint.every_steps=1",
                                         "--set",
                                         "checkpoint.every_minutes=0",
                                         "--set",
                                         "checkpoint.keep=2",
                                         "--set",
                                         "train.num_steps=1000",
                                         "--set",
                                         "output.progress=NONE",
                                         "--set",
                                         "eval.num_examples=128"};
  // Kill moments after a save started; how long a save takes depends on the machine's load,
  // so runs continue (up to 10) until 5 kills have landed while a .tmp file existed.
  int kills_during_save = 0;
  const int delay_ms[] = {0, 20, 50, 100, 150, 250, 5, 40, 80, 120};
  const int saves_before_kill[] = {1, 2};
  for (int i = 0; i < 10 && kills_during_save < 5; ++i) {
    CAPTURE(i, delay_ms[i]);
    const fs::path work = fresh("kill_" + std::to_string(i));
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--workdir", work.string()});
    const pid_t pid = spawn_vmoe(a);
    // Wait for the chosen save to start, then for the delay.
    int seen = 0;
    bool in_save = false;
    const auto t0 = std::chrono::steady_clock::now();
    while (seen < saves_before_kill[i % 2] &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      const bool now = has_tmp_file(work / "checkpoints");
      if (now && !in_save) ++seen;
      in_save = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(seen == saves_before_kill[i % 2]);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms[i]));
    kills_during_save += has_tmp_file(work / "checkpoints");
    REQUIRE(kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    const std::vector<std::string> complete = vmoe::list_checkpoints(work / "checkpoints");
    // Every complete checkpoint verifies, and one more step resumes from the newest.
    const int newest =
        complete.empty() ? 0 : std::stoi(fs::path(complete.front()).stem().string().substr(5));
    CHECK(newest >= saves_before_kill[i % 2] - 1);
    CommandResult again = vmoe::testing::run_command(
        std::string(VMOE_BINARY) + " train --config " + kConfig + " --workdir " + work.string() +
            kShort + " --set model.hidden_size=256 --set model.mlp_dim=1024" +
            " --set checkpoint.every_steps=0 --set train.num_steps=" + std::to_string(newest + 1),
        work.parent_path());
    INFO("stderr: " << again.err);
    CHECK(again.exit_code == 0);
    if (!complete.empty())
      CHECK(again.out.find("resuming from " + complete.front()) != std::string::npos);
  }
  CHECK(kills_during_save >= 5);
}

TEST_CASE("checkpoint: a flipped byte or a truncated file is skipped with a warning naming it") {
  SKIP_WITHOUT_DATA();
  for (const char* damage : {"flip", "truncate"}) {
    CAPTURE(damage);
    const fs::path work = fresh(std::string("damaged_") + damage);
    REQUIRE(train(0, work, 8).exit_code == 0);  // checkpoints at steps 4 and 8
    const fs::path bad = checkpoint(work, 8);
    const auto size = fs::file_size(bad);
    if (std::string(damage) == "flip") {
      // A byte in the middle of the file: inside some tensor's chunk.
      std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(std::streamoff(size / 2));
      char c = 0;
      f.read(&c, 1);
      c = char(c ^ 0x10);
      f.seekp(std::streamoff(size / 2));
      f.write(&c, 1);
    } else {
      fs::resize_file(bad, size / 2);
    }
    // The resume below saves a new step 8: keep the damaged file for the --from check.
    const fs::path kept = work.parent_path() / "damaged.h5";
    fs::copy_file(bad, kept);
    CommandResult r = train(0, work, 10);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.find("vmoe: warning: checkpoint '" + bad.string() + "' is damaged") !=
          std::string::npos);
    CHECK(r.out.find("resuming from " + checkpoint(work, 4).string()) != std::string::npos);
    // Naming a damaged file explicitly is an error, not a fallback.
    CommandResult from = vmoe::testing::run_command(
        std::string(VMOE_BINARY) + " train --config " + kConfig + " --workdir " + work.string() +
            kShort + " --set train.num_steps=12 --from " + kept.string(),
        work.parent_path());
    CHECK(from.exit_code == 1);
    CHECK(from.err.find("checkpoint '" + kept.string() + "' is damaged") != std::string::npos);
  }
}

TEST_CASE("checkpoint: SIGTERM finishes the step, saves and exits 0, , and the rerun resumes") {
  SKIP_WITHOUT_DATA();
  const fs::path work = fresh("sigterm");
  const std::string cmd = std::string(VMOE_BINARY) + " train --config " + kConfig + " --workdir " +
                          work.string() + kShort +
                          " --set checkpoint.every_steps=0 --set train.num_steps=100000";
  // timeout sends SIGTERM after 4 s; --preserve-status returns vmoe's own exit code.
  CommandResult r =
      vmoe::testing::run_command("timeout --preserve-status -s TERM 4 " + cmd, work.parent_path());
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("stopped by a signal after step ") != std::string::npos);
  const std::vector<std::string> saved = vmoe::list_checkpoints(work / "checkpoints");
  REQUIRE(saved.size() == 1);
  const int step = std::stoi(fs::path(saved[0]).stem().string().substr(5));
  CHECK(step > 0);
  CHECK(int(losses(work).size()) == step);  // every finished step was logged, none lost
  CommandResult again = train(0, work, step + 2);
  CHECK(again.exit_code == 0);
  CHECK(again.out.find("resuming from " + saved[0]) != std::string::npos);
  CHECK(int(losses(work).size()) == step + 2);
}

TEST_CASE("checkpoint: a checkpoint of another model is refused with the first mismatch named") {
  SKIP_WITHOUT_DATA();
  const fs::path work = fresh("mismatch");
  REQUIRE(train(0, work, 4).exit_code == 0);
  CommandResult r = train(0, work, 8, " --set model.hidden_size=32");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(
            "vmoe: error: checkpoint '" + checkpoint(work, 4).string() +
            "': tensor 'params/embedding/kernel' has shape [16, 64], the model expects [16, 32]") !=
        std::string::npos);
}

TEST_CASE("checkpoint: a negative position or another dtype in the checkpoint is refused, named") {
  SKIP_WITHOUT_DATA();
  const fs::path work = fresh("position");
  REQUIRE(train(0, work, 4).exit_code == 0);
  const std::string ck = checkpoint(work, 4).string();
  int64_t index = 0;
  {
    vmoe::Hdf5File f(ck, vmoe::Hdf5File::Mode::Append);
    index = f.get_attr_int("index_in_epoch");
    f.set_attr("index_in_epoch", int64_t(-3));
  }
  CommandResult r = train(0, work, 8);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("vmoe: error: checkpoint '" + ck + "': attribute 'index_in_epoch' is -3") !=
        std::string::npos);
  {
    vmoe::Hdf5File f(ck, vmoe::Hdf5File::Mode::Append);
    f.set_attr("index_in_epoch", index);
    f.set_attr("dtype", std::string("f64"));
  }
  r = train(0, work, 8);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("vmoe: error: checkpoint '" + ck +
                   "': attribute 'dtype' is 'f64', the model's parameters are f32") !=
        std::string::npos);
}

TEST_CASE("checkpoint: vmoe ckpt and h5ls on checkpoints written by training on 2 ranks") {
  SKIP_WITHOUT_DATA();
  const fs::path work = fresh("tools");
  REQUIRE(train(2, work, 8).exit_code == 0);
  const fs::path dir = work.parent_path();
  const std::string vmoe = std::string(VMOE_BINARY) + " ckpt ";
  const std::string a = checkpoint(work, 4).string(), b = checkpoint(work, 8).string();
  CommandResult verify = vmoe::testing::run_command(vmoe + "verify " + b, dir);
  CHECK(verify.exit_code == 0);
  CHECK(verify.out.find("ok: 174 tensors") != std::string::npos);  // 58 params x (value, m, v)
  CommandResult ls = vmoe::testing::run_command(vmoe + "ls " + b, dir);
  CHECK(ls.exit_code == 0);
  CHECK(ls.out.find("[8, 64, 128]") != std::string::npos);  // the experts' fc1 kernels
  CHECK(ls.out.find("expert") != std::string::npos);
  CommandResult same = vmoe::testing::run_command(vmoe + "diff " + b + " " + b, dir);
  CHECK(same.out.find("174 tensors compared, 0 differ") != std::string::npos);
  CommandResult moved = vmoe::testing::run_command(vmoe + "diff " + a + " " + b, dir);
  CHECK(moved.out.find("0 differ") == std::string::npos);  // 4 more steps changed the weights
  CommandResult stats = vmoe::testing::run_command(vmoe + "stats " + b, dir);
  CHECK(stats.out.find("expert norms: ") != std::string::npos);
  const fs::path exported = dir / "exported.h5";
  CommandResult out = vmoe::testing::run_command(
      vmoe + "export " + b + " " + exported.string() + " --no-optimizer", dir);
  CHECK(out.exit_code == 0);
  // The export evaluates exactly like the final weights the run wrote (same step).
  const std::string eval =
      std::string(VMOE_BINARY) + " eval --set eval.num_examples=128 --weights ";
  CommandResult e1 = vmoe::testing::run_command(eval + exported.string(), dir);
  CommandResult e2 = vmoe::testing::run_command(eval + (work / "weights.h5").string(), dir);
  CHECK(e1.exit_code == 0);
  CHECK(e1.out == e2.out);
  CommandResult h5ls = vmoe::testing::run_command("h5ls -r " + b, dir);
  CHECK(h5ls.exit_code == 0);
  CHECK(h5ls.out.find("/params/encoder/block_01/moe/experts/fc1/kernel Dataset {8, 64, 128}") !=
        std::string::npos);
}

TEST_CASE(
    "checkpoint: a full disk while saving is a clear error and the previous one stays intact") {
  SKIP_WITHOUT_DATA();
  // An 8 MiB file system: room for one 5 MB checkpoint, not two.
  const fs::path mount = vmoe::testing::scratch_dir("ckpt_full_disk") / "fs";
  fs::create_directories(mount);
  if (std::system(("mount -t tmpfs -o size=8m tmpfs " + mount.string() + " 2>/dev/null").c_str()) !=
      0) {
    WARN("cannot mount a small tmpfs here (needs root); skipped");
    return;
  }
  const fs::path work = mount / "w";
  CommandResult r = train(0, work, 8);
  CHECK(r.exit_code == 1);
  CHECK(r.err == "vmoe: error: cannot save checkpoint '" + checkpoint(work, 8).string() +
                     "': No space left on device; earlier checkpoints are untouched\n");
  CHECK(vmoe::list_checkpoints(work / "checkpoints") ==
        std::vector<std::string>{checkpoint(work, 4).string()});
  CHECK_FALSE(fs::exists(checkpoint(work, 8).string() + ".tmp"));
  CommandResult verify = vmoe::testing::run_command(
      std::string(VMOE_BINARY) + " ckpt verify " + checkpoint(work, 4).string(),
      mount.parent_path());
  CHECK(verify.exit_code == 0);
  CHECK(std::system(("umount " + mount.string()).c_str()) == 0);
}
