// Gradient accumulation under mpirun (1 and 2 ranks): a V-MoE trained with 2 micro-batches per
// rank, experts split over the ranks and gradients reduced by the GradientReducer, gets the
// update of one process taking the whole batch in one pass (also with recomputed blocks); the
// reducer reduces once per step, starting during the last micro-batch's backward.
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/optim/adamw.h"
#include "launch/train_step.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/gradient_reducer.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "test/small_vit.h"

using namespace vmoe;
using vmoe::testing::max_abs_diff;

namespace {

constexpr int64_t kBatch = 16;  // global batch
constexpr int64_t kExperts = 4;

// test/small_vit.h's V-MoE, 2 blocks, MoE in block 1.
VitConfig small_vmoe(VitConfig::Recompute recompute) {
  VitConfig c = testing::small_vmoe(2, {1});
  c.recompute = recompute;
  return c;
}

struct Run {
  std::vector<double> replicated;
  std::map<std::string, Tensor> experts;  // this rank's experts' parameters by name
  double loss = 0;
  size_t buckets = 0, launched_early = 0;
};

// Two AdamW steps; with `groups`, this rank's slice of every batch in `microbatches` parts.
Run train(const ProcessGroups* groups, int64_t microbatches,
          VitConfig::Recompute recompute = VitConfig::Recompute::none) {
  ParameterStore params;
  std::shared_ptr<const ExpertExchange> exchange;
  if (groups && groups->expert->size() > 1)
    exchange = std::make_shared<ExpertParallelExchange>(groups->expert, kExperts, 1);
  VisionTransformer model(params, small_vmoe(recompute), exchange);
  if (groups) params.set_expert_shard(groups->expert_shard());
  params.allocate(3, DType::f64);
  std::unique_ptr<GradientReducer> reducer;
  if (groups) reducer = std::make_unique<GradientReducer>(params, *groups, 4096);
  AdamW optimizer(params, AdamWOptions{});
  const LrSchedule schedule{LrSchedule::Kind::constant, 1e-3};
  const int64_t ranks = groups ? groups->world_size() : 1, rank = groups ? groups->rank() : 0;
  const int64_t per_rank = kBatch / ranks, first = rank * per_rank;
  StepOptions options;
  options.microbatches = microbatches;
  options.reducer = reducer.get();
  options.grad_clip_norm = 1.0;
  Run run;
  for (int64_t step = 0; step < 2; ++step) {
    const Tensor images = randn({kBatch, 16, 16, 1}, RngKey{8, uint64_t(step)}, 0);
    std::vector<int32_t> y(kBatch);
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = int32_t((i * 3 + size_t(step)) % 10);
    const Tensor labels = Tensor::from_vector(y, {kBatch});
    const StepResult r = train_step(model, params, optimizer, schedule,
                                    images.slice(0, first, first + per_rank).contiguous(),
                                    labels.slice(0, first, first + per_rank).contiguous(), step,
                                    step * kBatch + first, options);
    run.loss = r.read().loss;
  }
  run.replicated = params.flat_values(Sharding::replicated).cpu().to_vector<double>();
  for (const ParamInfo& info : params.infos())
    if (info.sharding == Sharding::expert) run.experts[info.name] = params.value(info.name).clone();
  if (reducer) {
    run.buckets = reducer->num_buckets();
    run.launched_early = reducer->buckets_launched_early();
  }
  return run;
}

}  // namespace

// Tolerance as in test_microbatches.cpp: f64 sums in another order (ranks, micro-batches).
namespace {

void check_matches_one_pass(VitConfig::Recompute recompute) {
  auto world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
  const Run ref = train(nullptr, 1);
  const ProcessGroups groups = make_process_groups(world, kExperts);
  const Run run = train(&groups, 2, recompute);
  CHECK(max_abs_diff(run.replicated, ref.replicated) < 1e-12);
  // This rank's experts: its slice of the one process's [E, ...] parameters.
  const ExpertShard shard = groups.expert_shard();
  REQUIRE(run.experts.size() == ref.experts.size());
  for (const auto& [name, value] : run.experts) {
    CAPTURE(name);
    const Tensor expected = ref.experts.at(name).slice(0, shard.first, shard.first + shard.count);
    CHECK(max_abs_diff(value.cpu().to_vector<double>(),
                       expected.contiguous().cpu().to_vector<double>()) < 1e-12);
  }
  CHECK(run.loss == Approx(ref.loss).epsilon(1e-12));
  // Several buckets, all launched while the last backward ran: once per step, not per
  // micro-batch (a reduction after the first micro-batch would average partial sums). With
  // recompute the blocks' parameters are reported ready through their checkpoint nodes.
  if (world->size() > 1) {
    CHECK(run.buckets > 1);
    CHECK(run.launched_early == run.buckets);
  }
}

}  // namespace

// Tolerance as in test_microbatches.cpp: f64 sums in another order (ranks, micro-batches).
TEST_CASE("microbatches: P ranks x 2 micro-batches equal one process in one pass") {
  check_matches_one_pass(VitConfig::Recompute::none);
}

// The blocks re-run in backward, expert exchange included, on every rank in the same order.
TEST_CASE("microbatches: with recomputed blocks too") {
  check_matches_one_pass(VitConfig::Recompute::blocks);
}
