// The routers beside top-k through the tools: the committed configs
// fashion_vmoe_ti_{experts_choice,soft,dropless} train, evaluate and plan; `vmoe predict` writes
// each router's assignment (E columns per token for Experts Choice and Soft MoE, k for
// dropless); `vmoe routing-map` draws it; and the test-time flags a router cannot honour are
// one-line errors.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "command_runner.h"
#include "hdf5/hdf5_file.h"

namespace fs = std::filesystem;

namespace {

using vmoe::testing::check_one_line_error;
using vmoe::testing::CommandResult;
using vmoe::testing::run_vmoe;

const std::string kData = "/usr/share/datasets/fashion-mnist";
const std::string kExperiments = std::string(VMOE_SOURCE_DIR) + "/configs/experiments/";
// test_cli's tiny run: 3 steps of a 2-block model (one MoE layer, block 1).
const std::string kTiny =
    " --set train.num_steps=3 --set data.num_train_examples=256 --set eval.num_examples=200"
    " --set model.num_layers=2 --set data.batch_size=32 --set output.progress=NONE"
    " --set checkpoint.every_minutes=0";

struct Trained {
  fs::path dir, work;
};

Trained train(const std::string& router) {
  const fs::path dir = vmoe::testing::scratch_dir("router_cli_" + router);
  const fs::path work = dir / "work";
  const CommandResult r = run_vmoe("train --config " + kExperiments + "fashion_vmoe_ti_" + router +
                                       ".textproto --workdir " + work.string() + kTiny,
                                   dir);
  INFO("train stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("test accuracy") != std::string::npos);
  return {dir, work};
}

// predict's routing of block 1 for 4 test images: experts i32 and kept u8, [4, 50, columns].
struct Routing {
  std::vector<int32_t> experts;
  std::vector<uint8_t> kept;
  std::vector<float> weights;
  std::vector<int64_t> shape;
};

Routing predict(const Trained& t, const std::string& flags = "") {
  const fs::path out = t.dir / "p.h5";
  const CommandResult r = run_vmoe("predict --workdir " + t.work.string() +
                                       " --start 0 --count 4 --output " + out.string() + flags,
                                   t.dir);
  INFO("predict stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  vmoe::Hdf5File h5(out.string(), vmoe::Hdf5File::Mode::Read);
  const vmoe::H5Array experts = h5.read("moe/block_01/experts");
  const vmoe::H5Array kept = h5.read("moe/block_01/kept");
  const vmoe::H5Array weights = h5.read("moe/block_01/weights");
  Routing out_routing;
  out_routing.shape = experts.shape;
  const auto* e = reinterpret_cast<const int32_t*>(experts.bytes.data());
  out_routing.experts.assign(e, e + experts.bytes.size() / sizeof(int32_t));
  out_routing.kept.assign(kept.bytes.begin(), kept.bytes.end());
  const auto* w = reinterpret_cast<const float*>(weights.bytes.data());
  out_routing.weights.assign(w, w + weights.bytes.size() / sizeof(float));
  return out_routing;
}

// Every token lists each of the E experts once, by descending weight.
void check_all_experts_by_weight(const Routing& r, int64_t experts) {
  REQUIRE(r.shape == std::vector<int64_t>{4, 50, experts});
  for (size_t token = 0; token < r.experts.size() / size_t(experts); ++token) {
    std::vector<bool> seen(size_t(experts), false);
    for (size_t j = 0; j < size_t(experts); ++j) {
      const int32_t e = r.experts[token * size_t(experts) + j];
      REQUIRE((e >= 0 && e < experts && !seen[size_t(e)]));
      seen[size_t(e)] = true;
      if (j > 0)
        CHECK(r.weights[token * size_t(experts) + j] <= r.weights[token * size_t(experts) + j - 1]);
    }
  }
}

int64_t count_kept(const Routing& r) {
  int64_t n = 0;
  for (uint8_t k : r.kept)
    n += k;
  return n;
}

void check_routing_map(const Trained& t) {
  const fs::path png = t.dir / "map.png";
  const CommandResult m = run_vmoe(
      "routing-map --workdir " + t.work.string() + " --images 0,3 --output " + png.string(), t.dir);
  INFO("routing-map stderr: " << m.err);
  CHECK(m.exit_code == 0);
  CHECK(fs::exists(png));
}

}  // namespace

TEST_CASE("router cli: Experts Choice trains, predicts its choices and honours test capacity") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const Trained t = train("experts_choice");
  const Routing r = predict(t);
  check_all_experts_by_weight(r, 8);
  // Groups of 8 images are cut to the 4 predicted ones: C = min(200, ceil(200 * 2 / 8)) = 52
  // -> 52 slots per expert, 416 (token, expert) pairs in all.
  CHECK(count_kept(r) == 8 * 52);
  // Test-time capacity: twice the slots per expert, twice the pairs.
  CHECK(count_kept(predict(t, " --capacity-factor 4")) == 8 * 100);
  check_routing_map(t);
  check_one_line_error(run_vmoe("eval --workdir " + t.work.string() + " --bpr on", t.dir),
                       "--bpr applies to capacity top-k routing only, not to router "
                       "EXPERTS_CHOICE");
  const CommandResult single =
      run_vmoe("eval --workdir " + t.work.string() + " --capacity-factor 1", t.dir);
  INFO("eval stderr: " << single.err);
  CHECK(single.exit_code == 0);
  // A capacity sweep: one row per capacity (no BPR rows: there is no token order to choose).
  const CommandResult sweep =
      run_vmoe("eval --workdir " + t.work.string() + " --capacity-sweep 0.5,2", t.dir);
  INFO("sweep stderr: " << sweep.err);
  REQUIRE(sweep.exit_code == 0);
  std::ifstream csv(t.work / "capacity_sweep.csv");
  std::vector<std::string> rows;
  for (std::string l; std::getline(csv, l);)
    rows.push_back(l);
  REQUIRE(rows.size() == 3);
  CHECK(rows[1].rfind("0.5,experts_choice,", 0) == 0);
  CHECK(rows[2].rfind("2,experts_choice,", 0) == 0);
}

TEST_CASE("router cli: Soft MoE trains, predicts each slot's argmax token, refuses capacities") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const Trained t = train("soft");
  const Routing r = predict(t);
  check_all_experts_by_weight(r, 8);
  // Each of an image's 8 x 13 slots marks its argmax token: at least one pair per expert and
  // image, at most one per slot.
  CHECK(count_kept(r) >= 4 * 8);
  CHECK(count_kept(r) <= 4 * 8 * 13);
  check_routing_map(t);
  for (const char* flag : {" --capacity-factor 2", " --capacity-sweep 1,2"}) {
    check_one_line_error(run_vmoe("eval --workdir " + t.work.string() + flag, t.dir),
                         "do not apply to router SOFT");
  }
  check_one_line_error(run_vmoe("predict --workdir " + t.work.string() + " --output " +
                                    (t.dir / "q.h5").string() + " --bpr off",
                                t.dir),
                       "not to router SOFT");
}

TEST_CASE("router cli: dropless top-k keeps every choice and refuses capacities") {
  if (!fs::exists(kData)) {
    WARN("Fashion-MNIST not installed; skipped");
    return;
  }
  const Trained t = train("dropless");
  const Routing r = predict(t);
  REQUIRE(r.shape == std::vector<int64_t>{4, 50, 2});
  CHECK(count_kept(r) == 4 * 50 * 2);
  check_routing_map(t);
  check_one_line_error(
      run_vmoe("routing-map --workdir " + t.work.string() + " --images 0 --capacity-factor 1",
               t.dir),
      "do not apply to dropless routing");
  check_one_line_error(run_vmoe("eval --workdir " + t.work.string() + " --bpr on", t.dir),
                       "with dropless: true");
}

TEST_CASE("router cli: vmoe plan counts each router's FLOPs") {
  const fs::path dir = vmoe::testing::scratch_dir("router_cli_plan");
  for (const char* router : {"experts_choice", "soft", "dropless"}) {
    INFO(router);
    const CommandResult r =
        run_vmoe("plan --config " + kExperiments + "fashion_vmoe_ti_" + router + ".textproto", dir);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("fashion_vmoe_ti_" + std::string(router)) != std::string::npos);
  }
}
