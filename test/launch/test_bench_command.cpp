// `vmoe bench train` (launch/bench_command.cpp): its figures agree with each other and with the
// model's own FLOP count (launch/plan.h), for a dense ViT and a V-MoE; bad input is a one-line
// error.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>

#include "configs/config.h"
#include "launch/plan.h"
#include "test/launch/command_runner.h"

namespace fs = std::filesystem;
using namespace vmoe;
using vmoe::testing::run_command;
using vmoe::testing::scratch_dir;

TEST_CASE("bench train: step time, images/s, FLOP rate and GEMM fraction agree") {
  const fs::path dir = scratch_dir("bench_train");
  for (const char* name : {"fashion_vit_ti", "fashion_vmoe_ti"}) {
    CAPTURE(name);
    const std::string config =
        std::string(VMOE_SOURCE_DIR) + "/configs/experiments/" + name + ".textproto";
    const auto r =
        run_command(std::string("OMP_NUM_THREADS=1 ") + VMOE_BINARY + " bench train --config " +
                        config + " --batch 16 --steps 3 --warmup 1 --gemm-size 128 --json",
                    dir);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    const double median = j["step_ms"]["median"], lo = j["step_ms"]["min"],
                 hi = j["step_ms"]["max"];
    CHECK(lo <= median);
    CHECK(median <= hi);
    CHECK(lo > 0);
    CHECK(j["batch"].get<int64_t>() == 16);
    CHECK(j["threads"].get<int>() == 1);
    CHECK(j["images_per_s"].get<double>() == Approx(16 * 1000.0 / median).epsilon(1e-9));
    const double flops = j["flops_per_step"].get<double>();
    CHECK(j["gflops_per_s"].get<double>() == Approx(flops / (median * 1e-3) / 1e9).epsilon(1e-9));
    CHECK(j["fraction_of_gemm"].get<double>() ==
          Approx(j["gflops_per_s"].get<double>() / j["gemm"]["gflops_per_s"].get<double>())
              .epsilon(1e-9));
    CHECK(j["gemm"]["dtype"] == "f32");
    CHECK(j["peak_device_bytes"].get<int64_t>() > 0);
    // The FLOPs the op layer counted in a real step are what the model's layers declare.
    PlanOptions options;
    options.batch = 16;
    const Plan plan = make_plan(config::load_config(config), options);
    CHECK(flops == plan.train_flops_per_step);
  }
}

TEST_CASE("bench train --profile: the MoE parts, kernels and phases of a V-MoE step") {
  const fs::path dir = scratch_dir("bench_profile");
  const std::string config =
      std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
  const std::string command = std::string("OMP_NUM_THREADS=1 ") + VMOE_BINARY +
                              " bench train --config " + config +
                              " --batch 16 --steps 1 --warmup 0 --gemm-size 64 --profile 2";
  const auto r = run_command(command + " --json", dir);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json p = nlohmann::json::parse(r.out)["profile"];
  CHECK(p["steps"].get<int64_t>() == 2);
  // Wall time per region, summed over phases; every MoE part the layer names is there.
  std::map<std::string, double> wall;
  for (const auto& row : p["regions"])
    wall[row["region"].get<std::string>()] += row["wall_ms"].get<double>();
  double moe_total = 0, routing = 0;
  for (const auto& [region, ms] : wall)
    if (region.rfind("moe.", 0) == 0) moe_total += ms;
  for (const char* part :
       {"moe.router", "moe.top_k", "moe.slots", "moe.dispatch", "moe.combine", "moe.aux_losses"}) {
    CAPTURE(part);
    CHECK(wall.count(part) == 1);
    routing += wall[part];
  }
  for (const char* region : {"moe.experts", "attention", "mlp", "layer_norm", "optimizer"})
    CHECK(wall.count(region) == 1);
  CHECK(p["moe"]["total_ms"].get<double>() == Approx(moe_total).epsilon(1e-9));
  CHECK(p["moe"]["routing_ms"].get<double>() == Approx(routing).epsilon(1e-9));
  // Kernels where the layer puts them, in both directions: dispatch is a gather forward and,
  // backward, the combine kernel gathering each token's rows back; the combine runs both ways;
  // the experts' GEMMs too; the update in the optimizer phase.
  std::set<std::tuple<std::string, std::string, std::string>> seen;
  for (const auto& row : p["kernels"]) {
    seen.insert({row["region"].get<std::string>(), row["kernel"].get<std::string>(),
                 row["phase"].get<std::string>()});
    CHECK(row["calls"].get<double>() > 0);
  }
  CHECK(seen.count({"moe.dispatch", "index_select", "forward"}) == 1);
  CHECK(seen.count({"moe.dispatch", "combine", "backward"}) == 1);
  CHECK(seen.count({"moe.dispatch", "index_add", "backward"}) == 0);
  CHECK(seen.count({"moe.combine", "combine", "forward"}) == 1);
  CHECK(seen.count({"moe.combine", "combine_backward", "backward"}) == 1);
  // The experts' fused MLP on the rows that hold tokens; their weight gradients are GEMMs.
  CHECK(seen.count({"moe.experts", "expert_mlp", "forward"}) == 1);
  CHECK(seen.count({"moe.experts", "expert_mlp_backward", "backward"}) == 1);
  CHECK(seen.count({"moe.experts", "gemm", "backward"}) == 1);
  CHECK(seen.count({"moe.top_k", "topk", "forward"}) == 1);
  CHECK(seen.count({"optimizer", "adamw_update", "optimizer"}) == 1);
  // The text form ends with the MoE summary.
  const auto text = run_command(command, dir);
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("MoE layers: ") != std::string::npos);
  CHECK(text.out.find("index_select") != std::string::npos);
}

TEST_CASE("bench train: bad input is a one-line error naming it") {
  const fs::path dir = scratch_dir("bench_train_errors");
  const std::string bench = std::string(VMOE_BINARY) + " bench train --config ";
  const std::string vmoe_ti =
      std::string(VMOE_SOURCE_DIR) + "/configs/experiments/fashion_vmoe_ti.textproto";
  const std::pair<std::string, std::string> cases[] = {
      {bench + "/nonexistent.textproto", "/nonexistent.textproto"},
      {bench + vmoe_ti + " --steps 0", "--steps"},
      {bench + vmoe_ti + " --profile 0", "--profile"},
      {bench + vmoe_ti + " --batch 12", "12"},  // not whole routing groups of 8 images
      {std::string(VMOE_BINARY) + " bench", "train"},
  };
  for (const auto& [command, named] : cases) {
    CAPTURE(command);
    const auto r = run_command(command, dir);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(named) != std::string::npos);
    CHECK(r.err.find('\n') == r.err.size() - 1);  // one line
  }
}
