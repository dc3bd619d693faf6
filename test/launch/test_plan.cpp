// `vmoe plan` (launch/plan.h) against the real thing: its parameter counts against allocated
// stores (1 and 2 ranks of expert sharding), the layers' declared FLOPs against what
// core/flop_counter.h counts in a real forward and backward, and their declared activations
// against the bytes the allocator holds after a real forward with the tape on; then the binary
// on every zoo and experiment config, and its errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "configs/config.h"
#include "core/allocator.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "launch/experiment.h"
#include "launch/plan.h"
#include "launch/train_step.h"
#include "models/vision_transformer.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/local_communicator.h"
#include "test/launch/command_runner.h"

namespace fs = std::filesystem;
using namespace vmoe;
using vmoe::testing::run_command;
using vmoe::testing::scratch_dir;

namespace {

// 16 x 16 images in 4 x 4 patches: with GAP, 16 tokens, and every activation of these sizes is
// a power-of-two number of bytes, so the allocator's size classes add nothing (a tight check).
// TOKEN adds the class token: 17 tokens, sizes the allocator rounds up by up to 1/8.
// The MoE block of small_config: the top-k router, or another router's fields.
const char* const kTopK = "k: 2 capacity_factor: 1.0 images_per_group: 2";

config::Config small_config(const std::string& classifier, bool moe, double dropout = 0,
                            const std::string& router = kTopK) {
  std::string text = R"(
    name: "plan_test"
    model { image_size: 16 channels: 1 patch_size: 4 hidden_size: 32 mlp_dim: 64 num_heads: 4
            num_layers: 2 num_classes: 8 classifier: )" +
                     classifier + " dropout_rate: " + std::to_string(dropout) +
                     " attention_dropout_rate: " + std::to_string(dropout);
  if (moe) {
    text += " moe { num_experts: 4 every_n: 2 " + router + " } ";
  }
  text += R"( }
    data { batch_size: 8 }
    optimizer { kind: ADAMW learning_rate: 1e-3 }
    train { loss: SOFTMAX_XENT }
  )";
  return config::parse_config_text(text, "plan_test");
}

int64_t in_use() {
  return backend_for(default_device()).allocator->stats().in_use_bytes;
}

struct Measured {
  int64_t forward_flops = 0, backward_flops = 0, kept_bytes = 0;
};

// One training forward (tape on) and backward of `model`, as train_step runs them.
Measured measure(const VisionTransformer& model, const config::Config& cfg, int64_t batch,
                 Precision precision) {
  const VitConfig& v = model.config();
  const Tensor images = randn({batch, v.image_size, v.image_size, v.channels}, RngKey{7, 1}, 0,
                              DType::f32, default_device());
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = int32_t(i % size_t(v.num_classes));
  const Tensor labels = Tensor::from_vector(y, {batch}, default_device());
  ForwardContext ctx{Mode::train, RngKey{11, 2}, 0};
  ctx.precision = precision;
  Measured m;
  const int64_t before = in_use();
  VitOutput out;
  {
    FlopCount flops;
    out = model(images, ctx);
    m.forward_flops = flops.flops();
  }
  m.kept_bytes = in_use() - before;
  Tensor loss = classification_loss(out.logits, labels, loss_from(cfg.train()));
  if (out.aux_loss.defined()) loss = loss + out.aux_loss;
  FlopCount flops;
  loss.backward();
  m.backward_flops = flops.flops();
  return m;
}

}  // namespace

TEST_CASE("plan: parameter counts equal an allocated store's, on 1 and 2 ranks") {
  for (bool moe : {false, true}) {
    for (int ranks : {1, 2}) {
      INFO((moe ? "moe, " : "dense, ") << ranks << " ranks");
      const config::Config cfg = small_config("TOKEN", moe);
      PlanOptions o;
      o.world_size = ranks;
      const Plan plan = make_plan(cfg, o);
      ParameterStore store;
      VisionTransformer model(store, vit_config_from(cfg.model()));
      if (moe && ranks > 1) store.set_expert_shard({4, 2, 2});  // rank 1 of 2: experts 2, 3
      store.allocate(1);
      int64_t local = 0, experts = 0, local_experts = 0;
      for (const ParamInfo& p : store.infos()) {
        local += shape_numel(p.local_shape);
        if (p.sharding == Sharding::expert) {
          experts += shape_numel(p.shape);
          local_experts += shape_numel(p.local_shape);
        }
      }
      CHECK(plan.params_total == store.num_elements());
      CHECK(plan.params_experts == experts);
      CHECK(plan.params_dense == store.num_elements() - experts);
      CHECK(plan.rank_params == local);
      CHECK(plan.rank_params_experts == local_experts);
      CHECK(plan.rank_params == store.flat_values(Sharding::replicated).numel() +
                                    store.flat_values(Sharding::expert).numel());
      if (moe) CHECK(local_experts == (ranks == 1 ? experts : experts / 2));
      CHECK(plan.expert_ranks == (moe ? ranks : 1));
    }
  }
}

TEST_CASE("plan: declared FLOPs and kept activations match a real forward and backward") {
  struct Case {
    const char* name;
    std::string classifier;
    bool moe;
    double dropout;
    Precision precision;
    ExchangeKind exchange;
    double tolerance;  // on the kept bytes: the allocator's size classes (up to 1/8), scalars
    std::string router = kTopK;
  };
  // Power-of-two sizes (GAP): within 1% (only the scalars and [E]-sized tensors of the losses
  // are left out). The class token's 17 tokens: the allocator rounds up to 1/8 more.
  const std::vector<Case> cases = {
      {"dense gap f32", "GAP", false, 0, Precision::f32, ExchangeKind::local, 0.01},
      {"moe gap f32", "GAP", true, 0, Precision::f32, ExchangeKind::local, 0.01},
      {"moe gap f32 expert-parallel", "GAP", true, 0, Precision::f32, ExchangeKind::expert_parallel,
       0.01},
      {"moe gap bf16", "GAP", true, 0, Precision::bf16, ExchangeKind::local, 0.01},
      {"dense gap dropout", "GAP", false, 0.1, Precision::f32, ExchangeKind::local, 0.01},
      {"moe token f32", "TOKEN", true, 0, Precision::f32, ExchangeKind::local, 0.125},
      {"moe token bf16 dropout", "TOKEN", true, 0.1, Precision::bf16, ExchangeKind::local, 0.125},
      {"experts choice gap f32", "GAP", true, 0, Precision::f32, ExchangeKind::local, 0.01,
       "router: EXPERTS_CHOICE capacity_factor: 2 images_per_group: 2"},
      {"experts choice token bf16", "TOKEN", true, 0, Precision::bf16, ExchangeKind::local, 0.125,
       "router: EXPERTS_CHOICE capacity_factor: 2 images_per_group: 2"},
      {"soft gap f32", "GAP", true, 0, Precision::f32, ExchangeKind::local, 0.01,
       "router: SOFT slots_per_expert: 4 noise_std: 0.5"},
      {"soft token bf16 expert-parallel", "TOKEN", true, 0, Precision::bf16,
       ExchangeKind::expert_parallel, 0.125, "router: SOFT slots_per_expert: 4"},
      // Dropless: the experts' variable-size batches round up in the allocator's size classes.
      {"dropless gap f32", "GAP", true, 0, Precision::f32, ExchangeKind::local, 0.02,
       "k: 2 dropless: true images_per_group: 2"},
      {"dropless token bf16", "TOKEN", true, 0, Precision::bf16, ExchangeKind::local, 0.125,
       "k: 2 dropless: true images_per_group: 2"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const config::Config cfg = small_config(c.classifier, c.moe, c.dropout, c.router);
    const int64_t batch = cfg.data().batch_size();
    ParameterStore store;
    std::shared_ptr<const ExpertExchange> exchange;
    if (c.exchange == ExchangeKind::expert_parallel) {
      exchange = std::make_shared<ExpertParallelExchange>(std::make_shared<LocalCommunicator>(), 4);
    }
    VisionTransformer model(store, vit_config_from(cfg.model()), exchange);
    store.allocate(3);
    CostShape shape;
    shape.batch = batch;
    shape.activation = activation_dtype(c.precision, DType::f32);
    // The CPU backend fuses attention in f32 only (core/cpu/supports.cpp).
    shape.fused_attention = c.precision == Precision::f32;
    shape.exchange = c.exchange;
    const LayerCost planned = model.cost(shape).total();
    const Measured real = measure(model, cfg, batch, c.precision);
    CHECK(planned.forward_flops == real.forward_flops);
    CHECK(planned.backward_flops == real.backward_flops);
    // Small tensors take the allocator's smallest block.
    const int64_t kept =
        planned.kept_bytes + planned.small_tensors * int64_t(CachingAllocator::block_size(1));
    CHECK(kept <= real.kept_bytes);
    CHECK(double(real.kept_bytes) <= double(kept) * (1 + c.tolerance));
    if (c.precision == Precision::bf16) CHECK(planned.cast_bytes > 0);
    // A different batch scales what is kept (nothing depends on the first batch's shapes).
    if (c.precision == Precision::f32 && c.dropout == 0) {
      shape.batch = 2 * batch;
      CHECK(model.cost(shape).total().forward_flops == 2 * planned.forward_flops);
    }
  }
}

TEST_CASE("plan: with recomputed blocks, a forward keeps what the plan says") {
  // model.recompute BLOCKS (models/vision_transformer.cpp): each block keeps only its input, so
  // after forward the stem, the block outputs and the tail are held; the plan adds one block
  // rebuilt in backward on top of that.
  for (bool moe : {false, true}) {
    INFO((moe ? "moe" : "dense"));
    config::Config cfg = small_config("GAP", moe);
    cfg.mutable_model()->set_recompute(config::ModelConfig::BLOCKS);
    ParameterStore store;
    VisionTransformer model(store, vit_config_from(cfg.model()));
    store.allocate(3);
    CostShape shape;
    shape.batch = cfg.data().batch_size();
    const VitCost cost = model.cost(shape);
    const int64_t small = int64_t(CachingAllocator::block_size(1));
    const int64_t expected = cost.stem.kept_bytes + cost.tail.kept_bytes +
                             int64_t(cost.blocks.size()) * cost.block_input_bytes +
                             (cost.stem.small_tensors + cost.tail.small_tensors) * small;
    const Measured real = measure(model, cfg, shape.batch, Precision::f32);
    CHECK(expected <= real.kept_bytes);
    CHECK(double(real.kept_bytes) <= double(expected) * 1.01);  // the MoE reports' scalars
    // The plan's figure: that, the loss's d logits and the largest block.
    int64_t largest = 0;
    for (const LayerCost& b : cost.blocks)
      largest = std::max(largest, b.kept_bytes);
    const Plan plan = make_plan(cfg, PlanOptions{});
    CHECK(plan.recompute == Recompute::blocks);
    CHECK(plan.memory.activations == plan.activations_recompute);
    CHECK(plan.activations_recompute ==
          expected + largest + shape.batch * cfg.model().num_classes() * 4);
  }
}

TEST_CASE("plan: the plan's figures follow from the layers' costs") {
  const config::Config cfg = small_config("TOKEN", true);
  PlanOptions o;
  o.world_size = 2;
  o.microbatches = 2;
  const Plan p = make_plan(cfg, o);
  CHECK(p.rank_batch == 2);
  CHECK(p.expert_ranks == 2);
  CHECK(p.memory.grads == p.memory.params);
  CHECK(p.memory.optimizer == 2 * p.memory.params);  // AdamW: two slots
  CHECK(p.memory.exchange_buffers > 0);
  CHECK(p.alltoall_bytes_per_step > 0);
  CHECK(p.activations_recompute < p.activations_no_recompute);
  CHECK(p.memory.total() == p.memory.params + p.memory.grads + p.memory.decay_mask +
                                p.memory.optimizer + p.memory.activations +
                                p.memory.backward_workspace + p.memory.exchange_buffers);
  // The capacity (1.0, rounded up to a multiple of 4) computes at least the k-active work.
  CHECK(p.forward_flops_per_image >= p.active_flops_per_image);
  // SGD keeps one slot.
  config::Config sgd = cfg;
  sgd.mutable_optimizer()->set_kind(config::OptimizerConfig::SGD);
  CHECK(make_plan(sgd, o).memory.optimizer == p.memory.params);
  // Recomputation: smaller activations, more FLOPs and all-to-all traffic.
  PlanOptions r = o;
  r.recompute = Recompute::blocks;
  const Plan pr = make_plan(cfg, r);
  CHECK(pr.memory.activations == p.activations_recompute);
  CHECK(pr.train_flops_per_step > p.train_flops_per_step);
  CHECK(pr.alltoall_bytes_per_step * 2 == p.alltoall_bytes_per_step * 3);
  // A device too small for one rank but not for more: the smallest P that fits is found.
  PlanOptions tight = o;
  tight.world_size = 1;
  const Plan one = make_plan(cfg, tight);
  tight.device_memory_bytes = double(one.memory.total()) - 1;
  const Plan smaller = make_plan(cfg, tight);
  CHECK_FALSE(smaller.fits);
  CHECK(smaller.min_world_size > 1);
  tight.world_size = smaller.min_world_size;
  CHECK(make_plan(cfg, tight).fits);
}

TEST_CASE("plan: vmoe plan --json runs for every zoo model and experiment config") {
  const fs::path dir = scratch_dir("plan_zoo");
  int checked = 0;
  for (const char* folder : {"models", "experiments"}) {
    for (const auto& entry :
         fs::directory_iterator(fs::path(VMOE_SOURCE_DIR) / "configs" / folder)) {
      if (entry.path().extension() != ".textproto") continue;
      INFO(entry.path());
      const auto r = run_command(
          std::string(VMOE_BINARY) + " plan --config " + entry.path().string() + " --json", dir);
      REQUIRE(r.exit_code == 0);
      const nlohmann::json j = nlohmann::json::parse(r.out);
      const int64_t total = j["params"]["total"];
      CHECK(total == j["params"]["experts"].get<int64_t>() + j["params"]["dense"].get<int64_t>());
      const config::Config cfg = config::load_config(entry.path().string());
      ParameterStore store;
      VisionTransformer model(store, vit_config_from(cfg.model()));
      CHECK(total == store.num_elements());
      const nlohmann::json& mem = j["per_rank"]["memory_bytes"];
      int64_t parts = 0;
      for (const char* part : {"params", "grads", "decay_mask", "optimizer", "activations",
                               "backward_workspace", "exchange_buffers"})
        parts += mem.at(part).get<int64_t>();
      CHECK(parts == mem["total"].get<int64_t>());
      CHECK(j["fits"].is_boolean());
      CHECK((j["min_world_size"].is_null() || j["min_world_size"].get<int>() >= 1));
      CHECK(j["flops"]["forward_gflops_per_image"].get<double>() > 0);
      ++checked;
    }
  }
  CHECK(checked >= 20);
}

TEST_CASE("plan: bad flags and layouts are one-line errors naming them") {
  const fs::path dir = scratch_dir("plan_errors");
  const std::string b15 = std::string(VMOE_BINARY) + " plan --config " + VMOE_SOURCE_DIR +
                          "/configs/models/vmoe_15b.textproto";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --world-size 0", "--world-size"},
      {" --world-size 3", "over an expert group of 3 ranks"},
      {" --world-size 64 --microbatches 3", "--microbatches 3"},
      {" --precision f16", "--precision"},
      {" --recompute all", "--recompute"},
      {" --device-memory-gib -1", "--device-memory-gib"},
      {" --world-size 4 --allocate-rank 4", "--allocate-rank must be in [0, 4)"},
      {" --batch 0", "--batch"},
      {" --bogus", "bogus"},
  };
  for (const auto& [flags, expected] : cases) {
    INFO(flags);
    const auto r = run_command(b15 + flags, dir);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(expected) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
  const auto missing =
      run_command(std::string(VMOE_BINARY) + " plan --config /nonexistent.textproto", dir);
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("nonexistent") != std::string::npos);
}
