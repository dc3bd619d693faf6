// `vmoe plan --allocate-rank`: rank 0's share of the 15B V-MoE on 32 ranks, allocated for real
// on this machine (its parameter values, gradients and decay mask, zero-filled: about 12 GB),
// holds what the plan says it holds. Its own ctest (label `memory`): it takes most of a 24 GiB
// machine for about a minute.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "test/launch/command_runner.h"

using vmoe::testing::run_command;
using vmoe::testing::scratch_dir;

TEST_CASE("plan: rank 0 of the 15B V-MoE on 32 ranks allocates what the plan says") {
  const auto dir = scratch_dir("plan_allocate");
  const auto r = run_command(std::string(VMOE_BINARY) + " plan --config " + VMOE_SOURCE_DIR +
                                 "/configs/models/vmoe_15b.textproto --world-size 32 "
                                 "--allocate-rank 0 --json",
                             dir);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nlohmann::json& a = j["allocation"];
  const nlohmann::json& mem = j["per_rank"]["memory_bytes"];
  const double rank_params = j["per_rank"]["params"].get<double>();
  // Rank 0 holds the dense part and 1 of 32 experts per MoE layer: about 1.29B parameters.
  CHECK(j["expert_ranks"].get<int>() == 32);
  CHECK(rank_params ==
        j["params"]["dense"].get<double>() + j["params"]["experts"].get<double>() / 32);
  CHECK(a["param_bytes"].get<double>() == mem["params"].get<double>());
  const double planned =
      mem["params"].get<double>() + mem["grads"].get<double>() + mem["decay_mask"].get<double>();
  CHECK(a["planned_bytes"].get<double>() == planned);
  // What the allocator holds after ParameterStore::allocate, within 1% of the plan.
  CHECK(a["allocated_bytes"].get<double>() == Approx(planned).epsilon(0.01));
  CHECK(a["allocated_param_bytes"].get<double>() ==
        Approx(a["param_bytes"].get<double>()).epsilon(0.01));
  // Every page written: the process's peak RSS covers the two f32 buffers and the byte mask
  // (the allocator's size-class slack beyond them is never touched).
  const double buffers = (2 * 4 + 1) * rank_params;
  CHECK(a["peak_rss_bytes"].get<double>() >= 0.99 * buffers);
  CHECK(a["peak_rss_bytes"].get<double>() < 16.0 * (1 << 30));
}
