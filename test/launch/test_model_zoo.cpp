// The model zoo (configs/models/) and the paper-scale experiments (configs/experiments/):
// every file parses and validates, its model is built shape-only (parameters declared in a
// ParameterStore, never allocated, so even the 15B model costs no memory), and the declared
// parameter counts equal a closed form written from PAPER.md's architecture, and the paper's
// "15B" where PAPER.md gives a figure.

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "configs/config.h"
#include "core/parameters.h"
#include "launch/experiment.h"
#include "models/vision_transformer.h"

namespace fs = std::filesystem;
using namespace vmoe;

namespace {

const fs::path kConfigs = fs::path(VMOE_SOURCE_DIR) / "configs";

struct Counts {
  int64_t total = 0, experts = 0;
};

// Parameters as declared by the model's own layers, without allocating them.
Counts declared_counts(const config::Config& cfg) {
  const VitConfig vit = vit_config_from(cfg.model());
  validate(vit);
  ParameterStore store;
  VisionTransformer model(store, vit);
  REQUIRE_FALSE(store.allocated());
  Counts c;
  for (const ParamInfo& p : store.infos()) {
    c.total += shape_numel(p.shape);
    if (p.sharding == Sharding::expert) c.experts += shape_numel(p.shape);
  }
  CHECK(c.total == store.num_elements());
  return c;
}

// The same counts from PAPER.md's description, independently of the layer code: patch
// embedding, class token, position embedding, L pre-LN blocks (attention: Q, K, V and output
// projections with biases; MLP or MoE: experts stacked [E, ...] plus a bias-free router),
// final LayerNorm, optional pre-logits, head.
Counts closed_form_counts(const config::ModelConfig& m) {
  const int64_t d = m.hidden_size(), mlp = m.mlp_dim(), p = m.patch_size();
  const int64_t tokens = (m.image_size() / p) * (m.image_size() / p) + 1;
  const int64_t mlp_params = d * mlp + mlp + mlp * d + d;
  const int64_t attention = 4 * (d * d + d);
  int64_t moe_layers = 0;
  if (m.has_moe()) {
    const config::MoeConfig& e = m.moe();
    if (e.has_last_n())
      moe_layers = e.last_n();
    else
      moe_layers = m.num_layers() / e.every_n();
  }
  const int64_t dense_layers = m.num_layers() - moe_layers;
  const int64_t num_experts = m.has_moe() ? m.moe().num_experts() : 0;
  Counts c;
  c.experts = moe_layers * num_experts * mlp_params;
  const int64_t router = moe_layers * d * num_experts;
  const int64_t features = m.representation_size() > 0 ? m.representation_size() : d;
  const int64_t pre_logits =
      m.representation_size() > 0 ? d * m.representation_size() + m.representation_size() : 0;
  c.total = (p * p * m.channels() * d + d) + d + tokens * d +
            m.num_layers() * (2 * 2 * d + attention) + dense_layers * mlp_params + c.experts +
            router + 2 * d + pre_logits + features * m.num_classes() + m.num_classes();
  return c;
}

// A config holding only `model`, to compare model sections as text.
config::Config wrap_model(const config::ModelConfig& model) {
  config::Config c;
  *c.mutable_model() = model;
  return c;
}

config::Config load(const std::string& relative) {
  INFO(relative);
  return config::load_config((kConfigs / relative).string());
}

}  // namespace

TEST_CASE("model zoo: every paper model parses, validates and declares the closed-form count") {
  struct Expected {
    const char* name;
    int layers, hidden, mlp, heads, patch, moe_layers, classes;
  };
  // PAPER.md "Model sizes"; V-MoE: E 32, Every-2 (L/2 layers) or Last-n; JFT head 18,291,
  // the 15B model's 29,593.
  const std::vector<Expected> zoo = {
      {"vit_s32", 8, 512, 2048, 8, 32, 0, 18291},
      {"vit_b32", 12, 768, 3072, 12, 32, 0, 18291},
      {"vit_b16", 12, 768, 3072, 12, 16, 0, 18291},
      {"vit_l32", 24, 1024, 4096, 16, 32, 0, 18291},
      {"vit_l16", 24, 1024, 4096, 16, 16, 0, 18291},
      {"vit_h14", 32, 1280, 5120, 16, 14, 0, 18291},
      {"vmoe_s32", 8, 512, 2048, 8, 32, 4, 18291},
      {"vmoe_b32", 12, 768, 3072, 12, 32, 6, 18291},
      {"vmoe_b16", 12, 768, 3072, 12, 16, 6, 18291},
      {"vmoe_l32", 24, 1024, 4096, 16, 32, 12, 18291},
      {"vmoe_l16", 24, 1024, 4096, 16, 16, 12, 18291},
      {"vmoe_h14", 32, 1280, 5120, 16, 14, 16, 18291},
      {"vmoe_l16_last2", 24, 1024, 4096, 16, 16, 2, 18291},
      {"vmoe_h14_last5", 32, 1280, 5120, 16, 14, 5, 18291},
      {"vmoe_15b", 48, 1408, 6400, 16, 14, 24, 29593},
  };
  for (const Expected& e : zoo) {
    INFO(e.name);
    const config::Config cfg = load("models/" + std::string(e.name) + ".textproto");
    const config::ModelConfig& m = cfg.model();
    CHECK(cfg.name() == e.name);
    CHECK(m.image_size() == 224);
    CHECK(m.channels() == 3);
    CHECK(m.num_layers() == e.layers);
    CHECK(m.hidden_size() == e.hidden);
    CHECK(m.mlp_dim() == e.mlp);
    CHECK(m.num_heads() == e.heads);
    CHECK(m.patch_size() == e.patch);
    CHECK(m.num_classes() == e.classes);
    // Upstream head: pre-logits of width D (none for the 15B model), sigmoid cross-entropy.
    CHECK(m.representation_size() == (e.classes == 29593 ? 0 : e.hidden));
    CHECK(cfg.train().loss() == config::TrainConfig::SIGMOID_XENT);
    CHECK(cfg.optimizer().kind() == config::OptimizerConfig::ADAMW);
    CHECK(cfg.optimizer().weight_decay() == 0.1f);
    CHECK(cfg.data().batch_size() == 4096);
    if (e.moe_layers > 0) {
      REQUIRE(m.has_moe());
      CHECK(m.moe().num_experts() == 32);
      CHECK(m.moe().k() == 2);
      CHECK(m.moe().capacity_factor() == 1.05);
      CHECK(moe_config_from(m.moe(), m.num_layers()).moe_blocks.size() == size_t(e.moe_layers));
    } else {
      CHECK_FALSE(m.has_moe());
    }
    const Counts declared = declared_counts(cfg);
    const Counts expected = closed_form_counts(m);
    CHECK(declared.total == expected.total);
    CHECK(declared.experts == expected.experts);
  }
}

TEST_CASE("model zoo: the placements are the paper's blocks") {
  auto blocks = [](const std::string& name) {
    const config::Config cfg = load("models/" + name + ".textproto");
    return moe_config_from(cfg.model().moe(), cfg.model().num_layers()).moe_blocks;
  };
  CHECK(blocks("vmoe_s32") == std::vector<int64_t>{1, 3, 5, 7});
  CHECK(blocks("vmoe_l16_last2") == std::vector<int64_t>{21, 23});
  CHECK(blocks("vmoe_h14_last5") == std::vector<int64_t>{23, 25, 27, 29, 31});
  const std::vector<int64_t> every2 = blocks("vmoe_15b");
  REQUIRE(every2.size() == 24);
  for (size_t i = 0; i < every2.size(); ++i)
    CHECK(every2[i] == int64_t(2 * i + 1));
}

TEST_CASE("model zoo: the 15B V-MoE declares about 15 billion parameters, as the paper says") {
  const Counts c = declared_counts(load("models/vmoe_15b.textproto"));
  // PAPER.md: "A 15B-parameter V-MoE"; the closed form gives 14.7e9 (the paper's table rounds
  // it to 15B), almost all of it in the 24 x 32 experts.
  CHECK(c.total > 14.5e9);
  CHECK(c.total < 15.0e9);
  CHECK(double(c.experts) / double(c.total) > 0.9);
}

TEST_CASE("model zoo: every experiment config builds and agrees with its zoo model") {
  // Experiment configs cannot include a model file (the schema has no includes), so each repeats
  // its model section; this keeps the copies equal to the zoo (fine-tuning changes only the
  // head, the capacity factor and the loss).
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(kConfigs / "experiments")) {
    const std::string file = entry.path().filename().string();
    const bool upstream = file.rfind("upstream_", 0) == 0;
    const bool finetune = file.rfind("finetune_", 0) == 0;
    if (!upstream && !finetune) continue;
    INFO(file);
    const config::Config cfg = load("experiments/" + file);
    declared_counts(cfg);
    // upstream_vmoe_b16_jft -> vmoe_b16; finetune_vmoe_b16_imagenet -> vmoe_b16.
    std::string model = file.substr(file.find('_') + 1);
    model = model.substr(0, model.rfind('_'));
    const config::Config zoo = load("models/" + model + ".textproto");
    config::ModelConfig expected = zoo.model();
    if (finetune) {
      CHECK(cfg.optimizer().kind() == config::OptimizerConfig::SGD);
      CHECK(cfg.train().loss() == config::TrainConfig::SOFTMAX_XENT);
      CHECK(cfg.optimizer().grad_clip_norm() == 10.0f);
      CHECK(cfg.schedule().kind() == config::ScheduleConfig::WARMUP_COSINE_DECAY);
      expected.set_num_classes(cfg.model().num_classes());
      expected.set_representation_size(cfg.model().representation_size());
      expected.clear_head_bias_init();
      if (cfg.model().has_head_bias_init())
        expected.set_head_bias_init(cfg.model().head_bias_init());
      if (expected.has_moe()) {
        CHECK(cfg.model().moe().capacity_factor() == 1.5);
        expected.mutable_moe()->set_capacity_factor(1.5);
      }
    } else {
      CHECK(cfg.optimizer().learning_rate() == zoo.optimizer().learning_rate());
      CHECK(cfg.train().loss() == config::TrainConfig::SIGMOID_XENT);
    }
    CHECK(config::config_to_text(wrap_model(cfg.model())) ==
          config::config_to_text(wrap_model(expected)));
    ++checked;
  }
  CHECK(checked >= 4);
}
