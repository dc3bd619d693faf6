// Initialisation from other runs through the vmoe binary (docs/transfer.md): `vmoe train
// --init-from` of a weights file or a checkpoint evaluates exactly like the run it came from,
// `vmoe upcycle` makes experts that equal the dense MLP bit for bit, the same initialisation on
// 1 and 2 ranks, a resumed run ignoring init, and the errors as one `vmoe: error:` line.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"
#include "parallel/init_transforms.h"

namespace fs = std::filesystem;
using vmoe::testing::CommandResult;

namespace {

const std::string kExperiments = std::string(VMOE_SOURCE_DIR) + "/configs/experiments/";
const std::string kDense = kExperiments + "fashion_vit_ti.textproto";
const std::string kMoe = kExperiments + "fashion_vmoe_ti.textproto";
const std::string kData = "/usr/share/datasets/fashion-mnist";
// Tiny runs (2 blocks: block 1 is the MoE block of the V-MoE), no time-based checkpoints.
const std::string kTiny = vmoe::testing::kTinyRun + " --set checkpoint.every_minutes=0";
// One step that changes nothing: the config refuses learning_rate 0, so the peak is the
// smallest float (1e-45) and the first warmup step scales it by 1/1000, which rounds to exactly
// 0 in the f32 update (w -= 0 * update).
const std::string kFrozenStep =
    " --set train.num_steps=1 --set optimizer.learning_rate=1e-45"
    " --set schedule.kind=WARMUP_LINEAR_DECAY --set schedule.warmup_steps=1000"
    " --set schedule.end_learning_rate=0";

std::string launcher(int ranks) {
  if (ranks == 0) return "";
  return std::string(VMOE_MPIEXEC) + " -n " + std::to_string(ranks) +
         " --oversubscribe --allow-run-as-root --bind-to none -x OMP_NUM_THREADS=1 ";
}

CommandResult train(const std::string& config, const fs::path& work, const std::string& extra,
                    int ranks = 0) {
  return vmoe::testing::run_command(
      launcher(ranks) + VMOE_BINARY + " " +
          vmoe::testing::with_test_device("train --config " + config + " --workdir " +
                                          work.string() + kTiny + extra),
      work.parent_path());
}

fs::path scratch(const std::string& name) {
  return vmoe::testing::scratch_dir("init_" + name) / "w";
}

// The final evaluation of a run: (eval/loss, eval/accuracy) of the last line that has them.
std::pair<double, double> final_eval(const fs::path& work) {
  std::pair<double, double> out{-1, -1};
  std::ifstream in(work / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("eval/loss")) out = {j.at("eval/loss"), j.at("eval/accuracy")};
  }
  return out;
}

// Every params/ tensor of a weights file or checkpoint, as raw bytes.
std::map<std::string, std::vector<uint8_t>> params_of(const fs::path& file) {
  vmoe::Hdf5File f(file.string(), vmoe::Hdf5File::Mode::Read);
  std::map<std::string, std::vector<uint8_t>> out;
  for (const std::string& name : f.list())
    if (name.rfind("params/", 0) == 0) out[name] = f.read(name).bytes;
  return out;
}

#define SKIP_WITHOUT_DATA()                       \
  if (!fs::exists(kData)) {                       \
    WARN("Fashion-MNIST not installed; skipped"); \
    return;                                       \
  }

}  // namespace

TEST_CASE("init: --init-from a weights file or a checkpoint evaluates exactly like the source") {
  SKIP_WITHOUT_DATA();
  const fs::path source = scratch("source");
  // No warmup, so that the three steps move the model away from its initialisation.
  CommandResult r = train(kMoe, source, " --set schedule.warmup_steps=0");
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const std::pair<double, double> want = final_eval(source);
  REQUIRE(want.first > 0);
  // The control: the same frozen step without init evaluates otherwise.
  const fs::path control = scratch("control");
  REQUIRE(train(kMoe, control, kFrozenStep + " --set train.seed=7").exit_code == 0);
  CHECK(final_eval(control) != want);
  const fs::path ckpt = source / "checkpoints" / "ckpt_00000003.h5";
  REQUIRE(fs::exists(ckpt));
  for (const fs::path& from : {source / "weights.h5", ckpt}) {
    CAPTURE(from);
    const fs::path work = scratch("from_" + from.stem().string());
    // Another seed: nothing may be left of the model's own initialisation.
    r = train(kMoe, work, kFrozenStep + " --set train.seed=7 --init-from " + from.string());
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("init from " + from.string() + ":") != std::string::npos);
    CHECK(r.out.find("0 kept fresh") != std::string::npos);
    CHECK(final_eval(work) == want);  // same test loss and accuracy, exactly
    CHECK(params_of(work / "weights.h5") == params_of(source / "weights.h5"));
  }
  // A run that resumes ignores init: its checkpoint wins (the first run above saved step 1).
  const fs::path work = fs::temp_directory_path() / "vmoe_test_init_from_weights" / "w";
  REQUIRE(fs::exists(work / "checkpoints" / "ckpt_00000001.h5"));
  r = train(
      kMoe, work,
      kFrozenStep + " --set train.num_steps=2 --init-from " + (source / "weights.h5").string());
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("skipped: resuming") != std::string::npos);
  CHECK(r.out.find("resuming from") != std::string::npos);
}

TEST_CASE("init: vmoe upcycle makes every expert the dense MLP, the same on 1 and 2 ranks") {
  SKIP_WITHOUT_DATA();
  const fs::path dense = scratch("dense");
  CommandResult r = train(kDense, dense, " --set schedule.warmup_steps=0");
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const fs::path upcycled = dense.parent_path() / "upcycled.h5";
  r = vmoe::testing::run_vmoe("upcycle --from " + (dense / "weights.h5").string() + " --config " +
                                  kMoe + " --set model.num_layers=2 --output " + upcycled.string(),
                              dense.parent_path());
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("kept fresh by rule: encoder/block_01/moe/router/kernel") != std::string::npos);
  CHECK(r.out.find("sources unused") == std::string::npos);

  vmoe::Hdf5File d((dense / "weights.h5").string(), vmoe::Hdf5File::Mode::Read);
  vmoe::Hdf5File u(upcycled.string(), vmoe::Hdf5File::Mode::Read);
  for (const char* p : {"fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias"}) {
    CAPTURE(p);
    const vmoe::H5Array mlp = d.read(std::string("params/encoder/block_01/mlp/") + p);
    const vmoe::H5Array experts = u.read(std::string("params/encoder/block_01/moe/experts/") + p);
    REQUIRE(experts.shape[0] == 8);
    REQUIRE(experts.bytes.size() == 8 * mlp.bytes.size());
    for (size_t e = 0; e < 8; ++e) {
      CAPTURE(e);
      CHECK(std::equal(mlp.bytes.begin(), mlp.bytes.end(),
                       experts.bytes.begin() + std::ptrdiff_t(e * mlp.bytes.size())));
    }
  }
  // Everything else by name, unchanged.
  CHECK(d.read("params/encoder/block_00/mlp/fc1/kernel").bytes ==
        u.read("params/encoder/block_00/mlp/fc1/kernel").bytes);
  CHECK(d.read("params/head/kernel").bytes == u.read("params/head/kernel").bytes);

  // With k = E and no token dropped the combine weights sum to 1: the upcycled V-MoE computes
  // the dense function (to rounding: the printed accuracy and 4-digit loss are equal).
  auto evaluation = [&](const fs::path& weights, const std::string& extra) {
    const CommandResult e = vmoe::testing::run_vmoe(
        "eval --weights " + weights.string() + " --set eval.num_examples=200" + extra,
        dense.parent_path());
    REQUIRE(e.exit_code == 0);
    const size_t at = e.out.find("test accuracy: ");
    REQUIRE(at != std::string::npos);
    // "test accuracy: A% (N images), loss L"
    const size_t end = std::min(e.out.find(", MoE", at), e.out.find('\n', at));
    return e.out.substr(at, end - at);
  };
  const std::string dense_eval = evaluation(dense / "weights.h5", "");
  CHECK(evaluation(upcycled, " --set model.moe.k=8").substr(0, dense_eval.size()) == dense_eval);

  // The same through the config preset in `vmoe train`, on 1 and on 2 ranks (each rank writes
  // its own experts' rows): identical weights, and identical to `vmoe upcycle`'s.
  const std::string init =
      kFrozenStep + " --set init.preset=UPCYCLE --init-from " + (dense / "weights.h5").string();
  const fs::path one = scratch("upcycle_1"), two = scratch("upcycle_2");
  r = train(kMoe, one, init);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  r = train(kMoe, two, init, 2);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const auto a = params_of(one / "weights.h5");
  CHECK(a == params_of(two / "weights.h5"));
  CHECK(a == params_of(upcycled));
}

TEST_CASE("init: a V-MoE initialised on 2 ranks from 1 process's weights holds them exactly") {
  // Each rank reads only its experts' rows of every expert tensor (Hdf5File::read_rows).
  SKIP_WITHOUT_DATA();
  const fs::path source = scratch("vmoe_source");
  CommandResult r = train(kMoe, source, " --set schedule.warmup_steps=0");
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const fs::path two = scratch("vmoe_init_2");
  r = train(kMoe, two, kFrozenStep + " --init-from " + (source / "weights.h5").string(), 2);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  const auto want = params_of(source / "weights.h5");
  CHECK(want.count("params/encoder/block_01/moe/experts/fc1/kernel") == 1);
  CHECK(params_of(two / "weights.h5") == want);
}

TEST_CASE("init: config rules fine-tune at patch size 2: position embedding zoomed 7x7 -> 14x14") {
  SKIP_WITHOUT_DATA();
  const fs::path source = scratch("zoom_source");
  CommandResult r = train(kDense, source, " --set schedule.warmup_steps=0");
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  // The same images in patches of 2: a 14x14 grid, a new embedding and a new head (kept fresh).
  const fs::path dir = source.parent_path();
  const fs::path config = dir / "finetune.textproto";
  std::ifstream in(kDense);
  std::ofstream(config) << in.rdbuf() << R"(
init {
  rules { target: "embedding/.*" transform: KEEP_FRESH }
  rules { target: "head/.*" transform: KEEP_FRESH }
  rules { target: "encoder/posembed_input/pos_embedding" transform: ZOOM_POSEMB required: true }
}
)";
  const fs::path work = scratch("zoom_target");
  r = train(
      config.string(), work,
      kFrozenStep + " --set model.patch_size=2 --init-from " + (source / "weights.h5").string());
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("1 ZOOM_POSEMB") != std::string::npos);
  CHECK(
      r.out.find("kept fresh by rule: embedding/kernel, embedding/bias, head/kernel, head/bias") !=
      std::string::npos);
  vmoe::Hdf5File a((source / "weights.h5").string(), vmoe::Hdf5File::Mode::Read);
  vmoe::Hdf5File b((work / "weights.h5").string(), vmoe::Hdf5File::Mode::Read);
  const vmoe::H5Array src = a.read("params/encoder/posembed_input/pos_embedding");
  const vmoe::H5Array dst = b.read("params/encoder/posembed_input/pos_embedding");
  REQUIRE(src.shape == std::vector<int64_t>{1, 50, 64});
  REQUIRE(dst.shape == std::vector<int64_t>{1, 197, 64});
  const auto* s = reinterpret_cast<const float*>(src.bytes.data());
  const auto* d = reinterpret_cast<const float*>(dst.bytes.data());
  const std::vector<double> zoomed = vmoe::zoom_posemb(std::vector<double>(s, s + 50 * 64), 50,
                                                       std::vector<double>(197 * 64), 197, 64);
  size_t differ = 0;
  for (size_t i = 0; i < zoomed.size(); ++i)
    differ += d[i] != float(zoomed[i]);
  CHECK(differ == 0);
  CHECK(a.read("params/encoder/block_01/mlp/fc2/kernel").bytes ==
        b.read("params/encoder/block_01/mlp/fc2/kernel").bytes);
}

TEST_CASE("init: errors are one line naming the file, the rule or both tensors") {
  SKIP_WITHOUT_DATA();
  const fs::path dense = scratch("errors");
  CommandResult r = train(kDense, dense, "");
  REQUIRE(r.exit_code == 0);
  const std::string weights = (dense / "weights.h5").string();
  const fs::path dir = dense.parent_path();

  r = train(kDense, dir / "missing", kFrozenStep + " --init-from " + (dir / "none.h5").string());
  vmoe::testing::check_one_line_error(
      r, "init from '" + (dir / "none.h5").string() + "': cannot open it");
  r = train(kDense, dir / "shape", kFrozenStep + " --set model.mlp_dim=64 --init-from " + weights);
  vmoe::testing::check_one_line_error(
      r,
      "target 'encoder/block_00/mlp/fc1/kernel' [64, 64] and source "
      "'encoder/block_00/mlp/fc1/kernel' [64, 128] differ in shape");

  // Rules in a config file.
  std::ifstream in(kDense);
  const std::string base((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto with_rule = [&](const std::string& name, const std::string& rule) {
    const fs::path p = dir / (name + ".textproto");
    std::ofstream(p) << base << "\ninit { rules { " << rule << " } }\n";
    return p.string();
  };
  r = train(with_rule("required", "target: \"nothing/.*\" required: true"), dir / "required",
            kFrozenStep + " --init-from " + weights);
  vmoe::testing::check_one_line_error(
      r, "rule 0 (COPY target 'nothing/.*') is required but matches no parameter of the model");
  r = train(with_rule("regex", "target: \"encoder/(\""), dir / "regex",
            kFrozenStep + " --init-from " + weights);
  vmoe::testing::check_one_line_error(r, "init.rules[0].target is not a valid regular expression");
  r = train(with_rule("source", "target: \"head/(.*)\" source: \"pre_logits/$1\""), dir / "source",
            kFrozenStep + " --init-from " + weights);
  vmoe::testing::check_one_line_error(r,
                                      "source 'pre_logits/kernel' for target 'head/kernel' is "
                                      "not in the file");
  r = train(with_rule("empty", "target: \"\""), dir / "empty", kFrozenStep);
  vmoe::testing::check_one_line_error(r, "init.rules[0].target must not be empty");
  // Upcycling needs a V-MoE.
  r = train(kDense, dir / "preset",
            kFrozenStep + " --set init.preset=UPCYCLE --init-from " + weights);
  vmoe::testing::check_one_line_error(r, "init.preset UPCYCLE needs model.moe");
  r = vmoe::testing::run_vmoe(
      "upcycle --from " + weights + " --config " + kDense + " --output " + (dir / "u.h5").string(),
      dir);
  vmoe::testing::check_one_line_error(r, "has no model.moe");
}
