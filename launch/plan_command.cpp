// `vmoe plan`: parameters, FLOPs, per-rank memory and exchange volume of a config on P ranks,
// whether it fits a device, and the smallest P that does (launch/plan.h, docs/planning.md).
// With --allocate-rank R it also allocates and touches rank R's share of the parameter store
// (values, gradients, decay mask: what ParameterStore::allocate makes, zero-filled) and reports
// the bytes held and the process's peak RSS.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "core/backend.h"
#include "core/parameters.h"
#include "launch/commands.h"
#include "launch/experiment.h"
#include "launch/plan.h"
#include "models/vision_transformer.h"
#include "parallel/process_groups.h"

namespace vmoe {

namespace {

constexpr double kGiB = double(int64_t(1) << 30);

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", bytes / kGiB);
  return text;
}

std::string count(double n) {
  char text[32];
  if (n >= 1e9)
    std::snprintf(text, sizeof text, "%.3fB", n / 1e9);
  else
    std::snprintf(text, sizeof text, "%.3fM", n / 1e6);
  return text;
}

PlanOptions options_from(const PlanArgs& args) {
  PlanOptions o;
  o.world_size = args.world_size;
  o.batch = args.batch;
  o.microbatches = args.microbatches;
  if (args.precision == "f32")
    o.precision = Precision::f32;
  else if (args.precision == "bf16")
    o.precision = Precision::bf16;
  else if (!args.precision.empty())
    throw std::invalid_argument("--precision must be f32 or bf16, got '" + args.precision + "'");
  if (args.recompute == "blocks")
    o.recompute = Recompute::blocks;
  else if (args.recompute == "none")
    o.recompute = Recompute::none;
  else if (!args.recompute.empty())
    throw std::invalid_argument("--recompute must be none or blocks, got '" + args.recompute + "'");
  if (!(std::isfinite(args.device_memory_gib) && args.device_memory_gib > 0)) {
    throw std::invalid_argument("--device-memory-gib must be a finite number > 0, got " +
                                std::to_string(args.device_memory_gib));
  }
  o.device_memory_bytes = args.device_memory_gib * kGiB;
  return o;
}

struct Allocation {
  int rank = 0;
  int64_t param_bytes = 0;            // planned: parameter values of this rank
  int64_t planned_bytes = 0;          // planned: values + gradients + decay mask
  int64_t allocated_bytes = 0;        // held by the allocator after allocate()
  int64_t allocated_param_bytes = 0;  // the values' flat buffers alone
  int64_t peak_rss_bytes = 0;
  double seconds = 0;
};

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;  // Linux: KiB
}

// Builds the model shape-only, restricts the store to rank R's experts (as `vmoe train` does on
// P ranks) and allocates it on the CPU, zero-filled (every element written).
Allocation allocate_rank(const config::Config& cfg, const Plan& plan, int rank) {
  if (rank < 0 || rank >= plan.world_size) {
    throw std::invalid_argument("--allocate-rank must be in [0, " +
                                std::to_string(plan.world_size) + ") for --world-size " +
                                std::to_string(plan.world_size) + ", got " + std::to_string(rank));
  }
  ParameterStore store;
  VisionTransformer model(store, vit_config_from(cfg.model()));
  const int64_t e = cfg.model().has_moe() ? cfg.model().moe().num_experts() : 0;
  if (e > 0 && plan.world_size > 1) {
    // Expert groups are Pe consecutive ranks (parallel/process_groups.cpp).
    const int64_t per_rank = e / plan.expert_ranks;
    store.set_expert_shard({e, (rank % plan.expert_ranks) * per_rank, per_rank});
  }
  Allocator& allocator = *backend_for(kCpu).allocator;
  const int64_t before = allocator.stats().in_use_bytes;
  const auto start = std::chrono::steady_clock::now();
  // Zero-filled rather than drawn: every page is written all the same, in seconds.
  store.allocate(cfg.train().seed(), param_dtype_from(cfg.model()), kCpu, ParamInit::zeros);
  Allocation a;
  a.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  a.rank = rank;
  a.param_bytes = plan.memory.params;
  a.planned_bytes = plan.memory.params + plan.memory.grads + plan.memory.decay_mask;
  a.allocated_bytes = allocator.stats().in_use_bytes - before;
  for (Sharding s : {Sharding::replicated, Sharding::expert}) {
    const Tensor& values = store.flat_values(s);
    a.allocated_param_bytes +=
        int64_t(CachingAllocator::block_size(size_t(values.numel()) * dtype_size(values.dtype())));
  }
  a.peak_rss_bytes = peak_rss_bytes();
  return a;
}

nlohmann::json to_json(const config::Config& cfg, const Plan& p) {
  using nlohmann::json;
  const RankMemory& m = p.memory;
  json j;
  j["config"] = cfg.name();
  j["world_size"] = p.world_size;
  j["batch"] = p.batch;
  j["microbatches"] = p.microbatches;
  j["rank_batch"] = p.rank_batch;
  j["precision"] = p.precision == Precision::bf16 ? "bf16" : "f32";
  j["recompute"] = p.recompute == Recompute::blocks ? "blocks" : "none";
  j["expert_ranks"] = p.expert_ranks;
  j["params"] = {
      {"total", p.params_total}, {"experts", p.params_experts}, {"dense", p.params_dense}};
  j["flops"] = {{"forward_gflops_per_image", p.forward_flops_per_image / 1e9},
                {"active_gflops_per_image", p.active_flops_per_image / 1e9},
                {"train_flops_per_step", p.train_flops_per_step}};
  j["per_rank"] = {{"params", p.rank_params},
                   {"params_experts", p.rank_params_experts},
                   {"params_dense", p.params_dense},
                   {"memory_bytes",
                    {{"params", m.params},
                     {"grads", m.grads},
                     {"decay_mask", m.decay_mask},
                     {"optimizer", m.optimizer},
                     {"activations", m.activations},
                     {"backward_workspace", m.backward_workspace},
                     {"exchange_buffers", m.exchange_buffers},
                     {"total", m.total()}}},
                   {"activation_bytes",
                    {{"no_recompute", p.activations_no_recompute},
                     {"recompute_blocks", p.activations_recompute},
                     {"weight_casts", p.weight_cast_bytes}}},
                   {"alltoall_bytes_per_step", p.alltoall_bytes_per_step},
                   {"train_flops_per_step", p.train_flops_per_step / double(p.world_size)}};
  j["device_memory_bytes"] = p.device_memory_bytes;
  j["fits"] = p.fits;
  j["min_world_size"] = p.min_world_size > 0 ? json(p.min_world_size) : json(nullptr);
  return j;
}

void print_text(const config::Config& cfg, const Plan& p) {
  const RankMemory& m = p.memory;
  std::printf(
      "%s on %d ranks: batch %lld = %d x %lld micro-batch(es) x %lld images, %s, "
      "recompute %s\n",
      cfg.name().c_str(), p.world_size, static_cast<long long>(p.batch), p.world_size,
      static_cast<long long>(p.microbatches), static_cast<long long>(p.rank_batch),
      p.precision == Precision::bf16 ? "bf16" : "f32",
      p.recompute == Recompute::blocks ? "blocks" : "none");
  std::printf("parameters: %s total (%s in experts, %s dense)\n",
              count(double(p.params_total)).c_str(), count(double(p.params_experts)).c_str(),
              count(double(p.params_dense)).c_str());
  std::printf("  per rank: %s (experts over %d ranks)\n", count(double(p.rank_params)).c_str(),
              p.expert_ranks);
  std::printf("forward: %.2f GFLOPs per image at the training capacity (k-active: %.2f)\n",
              p.forward_flops_per_image / 1e9, p.active_flops_per_image / 1e9);
  std::printf("training: %.3g FLOPs per step (%.3g per rank)\n", p.train_flops_per_step,
              p.train_flops_per_step / double(p.world_size));
  std::printf("memory per rank: %s\n", gib(double(m.total())).c_str());
  const std::pair<const char*, int64_t> parts[] = {{"parameters", m.params},
                                                   {"gradients", m.grads},
                                                   {"decay mask", m.decay_mask},
                                                   {"optimizer state", m.optimizer},
                                                   {"activations", m.activations},
                                                   {"backward workspace", m.backward_workspace},
                                                   {"exchange buffers", m.exchange_buffers}};
  for (const auto& [name, bytes] : parts)
    std::printf("  %-20s %s\n", name, gib(double(bytes)).c_str());
  std::printf(
      "  activations: %s without recomputation, %s recomputing blocks (bf16 weight "
      "copies: %s)\n",
      gib(double(p.activations_no_recompute)).c_str(), gib(double(p.activations_recompute)).c_str(),
      gib(double(p.weight_cast_bytes)).c_str());
  std::printf("all-to-all: %s sent per rank per step\n",
              gib(double(p.alltoall_bytes_per_step)).c_str());
  std::printf("fits in %s: %s\n", gib(p.device_memory_bytes).c_str(), p.fits ? "yes" : "no");
  if (p.min_world_size > 0)
    std::printf("smallest world size that fits: %d\n", p.min_world_size);
  else
    std::printf("smallest world size that fits: none up to %lld ranks\n",
                static_cast<long long>(p.batch));
}

}  // namespace

int run_plan(const PlanArgs& args) {
  const config::Config cfg = config::load_config(args.config_path, args.overrides);
  const Plan plan = make_plan(cfg, options_from(args));
  nlohmann::json j = to_json(cfg, plan);
  if (args.allocate) {
    const Allocation a = allocate_rank(cfg, plan, args.allocate_rank);
    j["allocation"] = {{"rank", a.rank},
                       {"parts", {"params", "grads", "decay_mask"}},
                       {"values", "zeros (every page written)"},
                       {"param_bytes", a.param_bytes},
                       {"planned_bytes", a.planned_bytes},
                       {"allocated_bytes", a.allocated_bytes},
                       {"allocated_param_bytes", a.allocated_param_bytes},
                       {"peak_rss_bytes", a.peak_rss_bytes},
                       {"seconds", a.seconds}};
    if (!args.json) {
      print_text(cfg, plan);
      std::printf(
          "rank %d allocated: %s (planned %s for parameters, gradients and decay mask; "
          "parameters %s), peak RSS %s, %.1f s\n",
          a.rank, gib(double(a.allocated_bytes)).c_str(), gib(double(a.planned_bytes)).c_str(),
          gib(double(a.param_bytes)).c_str(), gib(double(a.peak_rss_bytes)).c_str(), a.seconds);
      return 0;
    }
  }
  if (args.json)
    std::printf("%s\n", j.dump(2).c_str());
  else
    print_text(cfg, plan);
  return 0;
}

}  // namespace vmoe
