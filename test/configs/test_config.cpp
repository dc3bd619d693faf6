// The config library (configs/config.h): every preset loads and validates, parse errors carry
// file:line:col, `--set` overrides of every field kind and their errors, validation messages
// name their field, printing round-trips.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "configs/config.h"
#include "test/temp_dir.h"

using namespace vmoe;
namespace fs = std::filesystem;
namespace pb = google::protobuf;

namespace {

using vmoe::testing::TempDir;

fs::path configs_dir() {
  return fs::path(VMOE_SOURCE_DIR) / "configs";
}

// The message of the ConfigError thrown by `f`, or "" when nothing is thrown.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The empty config (all defaults) with overrides applied and validated.
config::Config with(const std::vector<std::string>& overrides) {
  return parse_config_text("", "test", overrides);
}

std::string override_error(const std::string& assignment) {
  return error_of([&] { with({assignment}); });
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_config_text(text, "x.textproto"); });
}

}  // namespace

TEST_CASE("config: every textproto under configs/ loads and validates") {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(configs_dir())) {
    if (entry.path().extension() == ".textproto") files.push_back(entry.path());
  }
  // fashion_vit_ti plus the six dense paper sizes.
  REQUIRE(files.size() >= 7);
  for (const fs::path& p : files) {
    INFO(p.string());
    CHECK_NOTHROW(load_config(p.string()));
  }
}

TEST_CASE("config: presets hold the values they promise") {
  const config::Config f =
      load_config((configs_dir() / "experiments" / "fashion_vit_ti.textproto").string());
  CHECK(f.name() == "fashion_vit_ti");
  CHECK(f.model().image_size() == 28);
  CHECK(f.model().channels() == 1);
  CHECK(f.model().patch_size() == 4);
  CHECK(f.model().hidden_size() == 64);
  CHECK(f.model().mlp_dim() == 128);
  CHECK(f.model().num_heads() == 4);
  CHECK(f.model().num_layers() == 4);
  CHECK(f.model().num_classes() == 10);
  CHECK(f.model().classifier() == config::ModelConfig::TOKEN);
  CHECK(f.optimizer().kind() == config::OptimizerConfig::ADAMW);
  CHECK(f.optimizer().learning_rate() == 2e-3f);
  CHECK(f.optimizer().weight_decay() == 1e-4f);
  CHECK(f.schedule().kind() == config::ScheduleConfig::WARMUP_COSINE_DECAY);
  CHECK(f.schedule().warmup_steps() == 500);
  CHECK(f.data().batch_size() == 128);
  CHECK(f.train().num_epochs() == 10.0f);
  CHECK(f.train().loss() == config::TrainConfig::SOFTMAX_XENT);
  CHECK_FALSE(f.model().has_moe());

  // fashion_vmoe_ti is fashion_vit_ti with MoE layers (E 8, k 2, Every-2, capacity 1.05,
  // vanilla routing) and nothing else changed, so the two compare at equal steps.
  config::Config v =
      load_config((configs_dir() / "experiments" / "fashion_vmoe_ti.textproto").string());
  CHECK(v.model().moe().num_experts() == 8);
  CHECK(v.model().moe().k() == 2);
  CHECK(v.model().moe().capacity_factor() == 1.05);
  CHECK(v.model().moe().every_n() == 2);
  CHECK_FALSE(v.model().moe().batch_priority());
  v.mutable_model()->clear_moe();
  v.set_name(f.name());
  CHECK(config_to_text(v) == config_to_text(f));

  // The paper's table: L, D, M, heads, patch.
  struct Size {
    const char* file;
    int layers, hidden, mlp, heads, patch;
  };
  const Size sizes[] = {{"vit_s32", 8, 512, 2048, 8, 32},    {"vit_b32", 12, 768, 3072, 12, 32},
                        {"vit_b16", 12, 768, 3072, 12, 16},  {"vit_l32", 24, 1024, 4096, 16, 32},
                        {"vit_l16", 24, 1024, 4096, 16, 16}, {"vit_h14", 32, 1280, 5120, 16, 14}};
  for (const Size& s : sizes) {
    INFO(s.file);
    const config::Config c =
        load_config((configs_dir() / "models" / (std::string(s.file) + ".textproto")).string());
    CHECK(c.model().num_layers() == s.layers);
    CHECK(c.model().hidden_size() == s.hidden);
    CHECK(c.model().mlp_dim() == s.mlp);
    CHECK(c.model().num_heads() == s.heads);
    CHECK(c.model().patch_size() == s.patch);
    CHECK(c.model().image_size() == 224);
    CHECK(c.model().channels() == 3);
    CHECK(c.model().representation_size() == s.hidden);
  }
}

TEST_CASE("config: the fine-tuning study's configs change only what they say") {
  const auto experiment = [](const std::string& name) {
    return load_config((configs_dir() / "experiments" / (name + ".textproto")).string());
  };
  for (const std::string kind : {"vit", "vmoe"}) {
    INFO(kind);
    const config::Config base = experiment("fashion_" + kind + "_ti");
    const config::Config pre = experiment("fashion_" + kind + "_ti_pretrain5");
    const config::Config ft = experiment("fashion_" + kind + "_ti_finetune5");
    // Pre-training: the base run on classes 0-4, nothing else changed.
    CHECK(std::vector<int32_t>(pre.data().classes().begin(), pre.data().classes().end()) ==
          std::vector<int32_t>{0, 1, 2, 3, 4});
    config::Config p = pre;
    p.mutable_data()->clear_classes();
    p.mutable_model()->set_num_classes(10);
    p.set_name(base.name());
    CHECK(config_to_text(p) == config_to_text(base));
    // Fine-tuning: the other classes at 40 px (a 10x10 grid), PAPER.md's recipe, the new head
    // kept fresh and the position embedding zoomed.
    CHECK(std::vector<int32_t>(ft.data().classes().begin(), ft.data().classes().end()) ==
          std::vector<int32_t>{5, 6, 7, 8, 9});
    CHECK(ft.model().image_size() / ft.model().patch_size() == 10);
    CHECK(ft.data().inception_crop());  // the only training path that resizes 28 -> 40
    CHECK(ft.optimizer().kind() == config::OptimizerConfig::SGD);
    CHECK(ft.optimizer().momentum() == 0.9f);
    CHECK(ft.optimizer().grad_clip_norm() == 10.0f);
    CHECK(ft.optimizer().weight_decay() == 0.0f);
    CHECK(ft.schedule().kind() == config::ScheduleConfig::WARMUP_COSINE_DECAY);
    CHECK(ft.schedule().warmup_steps() > 0);
    CHECK(ft.train().loss() == config::TrainConfig::SOFTMAX_XENT);
    CHECK(ft.init().path().empty());  // --init-from
    REQUIRE(ft.init().rules_size() == 2);
    CHECK(ft.init().rules(0).transform() == config::InitRule::KEEP_FRESH);
    CHECK(ft.init().rules(1).transform() == config::InitRule::ZOOM_POSEMB);
    // The model is the pre-trained one but for the resolution and the fine-tuning capacity.
    config::ModelConfig m = ft.model();
    m.set_image_size(pre.model().image_size());
    if (m.has_moe()) {
      CHECK(m.moe().capacity_factor() == 1.5f);
      m.mutable_moe()->set_capacity_factor(pre.model().moe().capacity_factor());
    }
    CHECK(pb::util::MessageDifferencer::Equals(m, pre.model()));
  }
}

TEST_CASE("config: an empty config takes the schema defaults and validates") {
  const config::Config c = with({});
  CHECK(c.name().empty());
  CHECK(c.model().image_size() == 28);
  CHECK(c.model().layer_norm_eps() == 1e-6f);
  CHECK(c.model().dtype() == "f32");
  CHECK_FALSE(c.model().has_head_bias_init());
  CHECK(c.data().dir() == "/usr/share/datasets/fashion-mnist");
  CHECK(c.data().train_images() == "train-images-idx3-ubyte.gz");
  CHECK(c.data().test_labels() == "t10k-labels-idx1-ubyte.gz");
  CHECK(c.data().batch_size() == 128);
  CHECK(c.data().eval_batch_size() == 500);
  CHECK(c.data().mean() == 0.5f);
  CHECK(c.data().std() == 0.5f);
  CHECK(c.data().shuffle());
  CHECK(c.optimizer().b2() == 0.999f);
  CHECK(c.optimizer().decay_kernels_only());
  CHECK(c.schedule().end_learning_rate() == 1e-5f);
  CHECK(c.train().log_every_steps() == 50);
  CHECK(c.output().metrics_file() == "metrics.jsonl");
  CHECK(c.output().weights_file() == "weights.h5");
  CHECK(c.output().progress() == config::OutputConfig::AUTO);
}

TEST_CASE("config: an unknown field's error names file, line, column and field") {
  TempDir dir;
  const std::string path = dir.write("typo.textproto",
                                     "name: \"x\"\n"
                                     "model {\n"
                                     "  hiden_size: 3\n"
                                     "}\n");
  CHECK(error_of([&] { load_config(path); }) ==
        path + ":3:3: unknown field 'hiden_size' in vmoe.config.ModelConfig");

  // Followed by a block rather than ':'.
  CHECK(parse_error("name: \"x\"\ncheckpoints {\n}\n") ==
        "x.textproto:2:1: unknown field 'checkpoints' in vmoe.config.Config");
  // The tokenizer counts a tab as up to 8 columns; the error counts bytes.
  CHECK(parse_error("model {\n\thiden_size: 3\n}\n") ==
        "x.textproto:2:2: unknown field 'hiden_size' in vmoe.config.ModelConfig");
}

TEST_CASE("config: syntax and value errors are one located line") {
  CHECK(parse_error("model {\n  hidden_size: abc\n}\n") ==
        "x.textproto:2:16: expected integer, got: abc");
  CHECK(parse_error("model {\n  hidden_size 3\n}\n") ==
        "x.textproto:2:15: expected \":\", found \"3\"");
  CHECK(parse_error("model {\n  hidden_size: 3\n") ==
        "x.textproto:3:1: expected identifier, got: end of file");
  CHECK(parse_error("name: foo\n") == "x.textproto:1:7: expected string, got: foo");
  CHECK(parse_error("model {\n  classifier: FOO\n}\n") ==
        "x.textproto:2:15: unknown value 'FOO' for enum field 'classifier' "
        "(expected one of TOKEN, GAP)");
  // `kind` exists in two messages with different enums, so no list is guessed.
  CHECK(parse_error("optimizer { kind: LBFGS }") ==
        "x.textproto:1:19: unknown value 'LBFGS' for enum field 'kind'");
  CHECK(parse_error("name: \"a\"\nname: \"b\"\n") ==
        "x.textproto:2:1: field 'name' is set more than once");
  for (const std::string& text : {std::string("model {\n  hidden_size: 3.5\n}\n"),
                                  std::string("train { seed: -1 }"), std::string("model { {")}) {
    INFO(text);
    const std::string e = parse_error(text);
    CHECK(e.rfind("x.textproto:", 0) == 0);
    CHECK(e.find('\n') == std::string::npos);
  }
}

TEST_CASE("config: a missing file is named with the system's reason") {
  TempDir dir;
  const std::string path = (dir.path() / "absent.textproto").string();
  CHECK(error_of([&] { load_config(path); }) ==
        "cannot read config file '" + path + "': No such file or directory");
  CHECK(error_of([&] { load_config(dir.path().string()); }) ==
        "cannot read config file '" + dir.path().string() + "': Is a directory");
}

TEST_CASE("config: overrides set every kind of field") {
  const config::Config c = with({
      "model.hidden_size=128",            // int32, nested
      "train.num_steps=+1000",            // int64
      "train.seed=18446744073709551615",  // uint64, full range
      "optimizer.learning_rate=3e-4",     // float
      "data.shuffle=false",               // bool
      "optimizer.nesterov=TRUE",          // bool, any case
      "optimizer.kind=SGD",               // enum by name
      "model.classifier=gap",             // enum, any case
      "data.dir=/x/y z",                  // string, unquoted, with a space
      "name=\"quoted\"",                  // one pair of quotes removed
      "output.weights_file=a=b.h5",       // '=' inside the value
      "model.head_bias_init=-10",         // optional without a default
  });
  CHECK(c.model().hidden_size() == 128);
  CHECK(c.train().num_steps() == 1000);
  CHECK(c.train().seed() == 18446744073709551615ull);
  CHECK(c.optimizer().learning_rate() == 3e-4f);
  CHECK_FALSE(c.data().shuffle());
  CHECK(c.optimizer().nesterov());
  CHECK(c.optimizer().kind() == config::OptimizerConfig::SGD);
  CHECK(c.model().classifier() == config::ModelConfig::GAP);
  CHECK(c.data().dir() == "/x/y z");
  CHECK(c.name() == "quoted");
  CHECK(c.output().weights_file() == "a=b.h5");
  REQUIRE(c.model().has_head_bias_init());
  CHECK(c.model().head_bias_init() == -10.0f);

  // Later overrides win, and an override can repair a file value before validation.
  CHECK(with({"name=a", "name=foo"}).name() == "foo");
  TempDir dir;
  const std::string path = dir.write("heads.textproto", "model { hidden_size: 100 num_heads: 3 }");
  CHECK_THROWS_AS(load_config(path), ConfigError);
  CHECK(load_config(path, {"model.num_heads=4"}).model().num_heads() == 4);
  // The namespace alias reaches the same function.
  CHECK(config::load_config(path, {"model.num_heads=5"}).model().num_heads() == 5);
}

TEST_CASE("config: an unknown override path names the override and the bad segment") {
  CHECK(override_error("model.hiden_size=3") ==
        "--set model.hiden_size=3: no field 'hiden_size' in vmoe.config.ModelConfig");
  CHECK(override_error("modle.hidden_size=3") ==
        "--set modle.hidden_size=3: no field 'modle' in vmoe.config.Config");
  CHECK(override_error("model.hidden_size.x=3") ==
        "--set model.hidden_size.x=3: model.hidden_size is not a message, so it has no field 'x'");
  CHECK(override_error("model=3") ==
        "--set model=3: model is a message; set one of its fields (model.FIELD=VALUE)");
  CHECK(override_error("model.hidden_size") ==
        "--set model.hidden_size: expected path.to.field=value");
  CHECK(override_error("=3") == "--set =3: expected path.to.field=value");
}

TEST_CASE("config: a bad override value names the override and the expected kind") {
  CHECK(override_error("model.hidden_size=abc") ==
        "--set model.hidden_size=abc: expected an integer for model.hidden_size");
  CHECK(override_error("model.hidden_size=1.5") ==
        "--set model.hidden_size=1.5: expected an integer for model.hidden_size");
  CHECK(override_error("model.hidden_size=") ==
        "--set model.hidden_size=: expected an integer for model.hidden_size");
  CHECK(override_error("model.hidden_size=3000000000") ==
        "--set model.hidden_size=3000000000: value out of range for model.hidden_size (int32)");
  CHECK(override_error("train.seed=-1") ==
        "--set train.seed=-1: expected a non-negative integer for train.seed");
  CHECK(override_error("optimizer.learning_rate=fast") ==
        "--set optimizer.learning_rate=fast: expected a number for optimizer.learning_rate");
  CHECK(override_error("optimizer.learning_rate=1e60") ==
        "--set optimizer.learning_rate=1e60: value out of range for optimizer.learning_rate "
        "(float)");
  CHECK(override_error("data.shuffle=maybe") ==
        "--set data.shuffle=maybe: expected true or false for data.shuffle");
  CHECK(override_error("optimizer.kind=LBFGS") ==
        "--set optimizer.kind=LBFGS: expected one of ADAMW, SGD for optimizer.kind");
}

TEST_CASE("config: overrides of repeated fields replace the list") {
  // The schema has no repeated fields yet; a message built at run time exercises the path.
  pb::FileDescriptorProto file;
  REQUIRE(pb::TextFormat::ParseFromString(
      R"pb(
        name: "override_test.proto"
        package: "vmoe.test"
        message_type {
          name: "Holder"
          field { name: "ints" number: 1 label: LABEL_REPEATED type: TYPE_INT32 }
          field { name: "names" number: 2 label: LABEL_REPEATED type: TYPE_STRING }
          field {
            name: "inner"
            number: 3
            label: LABEL_OPTIONAL
            type: TYPE_MESSAGE
            type_name: ".vmoe.test.Inner"
          }
          field {
            name: "items"
            number: 4
            label: LABEL_REPEATED
            type: TYPE_MESSAGE
            type_name: ".vmoe.test.Inner"
          }
        }
        message_type {
          name: "Inner"
          field { name: "values" number: 1 label: LABEL_REPEATED type: TYPE_DOUBLE }
        }
      )pb",
      &file));
  pb::DescriptorPool pool;
  const pb::FileDescriptor* built = pool.BuildFile(file);
  REQUIRE(built != nullptr);
  const pb::Descriptor* holder_type = built->FindMessageTypeByName("Holder");
  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> holder(factory.GetPrototype(holder_type)->New());
  const pb::Reflection* r = holder->GetReflection();
  const pb::FieldDescriptor* ints = holder_type->FindFieldByName("ints");
  const pb::FieldDescriptor* names = holder_type->FindFieldByName("names");

  auto int_list = [&] {
    std::vector<int> v;
    for (int i = 0; i < r->FieldSize(*holder, ints); ++i) {
      v.push_back(r->GetRepeatedInt32(*holder, ints, i));
    }
    return v;
  };
  apply_override(*holder, "ints=1,2,3");
  CHECK(int_list() == std::vector<int>{1, 2, 3});
  apply_override(*holder, "ints=7");
  CHECK(int_list() == std::vector<int>{7});
  apply_override(*holder, "ints=");
  CHECK(int_list().empty());

  apply_override(*holder, "names=a b,c");
  REQUIRE(r->FieldSize(*holder, names) == 2);
  CHECK(r->GetRepeatedString(*holder, names, 0) == "a b");
  CHECK(r->GetRepeatedString(*holder, names, 1) == "c");

  apply_override(*holder, "inner.values=0.5,-2");
  const pb::Message& inner = r->GetMessage(*holder, holder_type->FindFieldByName("inner"));
  const pb::FieldDescriptor* values = inner.GetDescriptor()->FindFieldByName("values");
  REQUIRE(inner.GetReflection()->FieldSize(inner, values) == 2);
  CHECK(inner.GetReflection()->GetRepeatedDouble(inner, values, 1) == -2.0);

  CHECK(error_of([&] { apply_override(*holder, "ints=1,x"); }) ==
        "--set ints=1,x: expected an integer for ints");
  CHECK(error_of([&] { apply_override(*holder, "items.values=1"); }) ==
        "--set items.values=1: items is a repeated message; --set cannot address its elements");
}

TEST_CASE("config: each validation error names its field") {
  CHECK(override_error("model.num_heads=3") ==
        "model.hidden_size must be divisible by model.num_heads (got 64 and 3)");
  CHECK(error_of([] {
          with({"model.hidden_size=100", "model.num_heads=3"});
        }) == "model.hidden_size must be divisible by model.num_heads (got 100 and 3)");
  CHECK(override_error("model.patch_size=5") ==
        "model.image_size must be divisible by model.patch_size (got 28 and 5)");
  CHECK(override_error("model.hidden_size=0") == "model.hidden_size must be in [1, 65536] (got 0)");
  CHECK(override_error("model.dropout_rate=1") == "model.dropout_rate must be in [0, 1) (got 1)");
  CHECK(override_error("model.dtype=f16") == "model.dtype must be one of f32, f64 (got 'f16')");
  CHECK(override_error("model.dtype=bf16") ==
        "model.dtype must be one of f32, f64 (got 'bf16'): parameters stay f32 (master weights); "
        "for bf16 compute set train.precision: BF16");
  CHECK(with({"model.dtype=f64"}).model().dtype() == "f64");
  CHECK(error_of([] {
          with({"train.num_steps=0", "train.num_epochs=0"});
        }) == "train.num_steps or train.num_epochs must be > 0 (got 0 and 0)");
  CHECK(error_of([] {
          with({"schedule.kind=WARMUP_LINEAR_DECAY", "schedule.end_learning_rate=0.01"});
        }) == "schedule.end_learning_rate must be <= optimizer.learning_rate (got 0.01 and 0.001)");
  // A constant schedule never reaches end_learning_rate, so it is not checked against the peak.
  CHECK_NOTHROW(with({"schedule.end_learning_rate=0.01"}));

  // Each override makes exactly one field invalid; the error must start with its path.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.image_size=-28", "model.image_size"},
      {"model.channels=0", "model.channels"},
      {"model.patch_size=0", "model.patch_size"},
      {"model.mlp_dim=0", "model.mlp_dim"},
      {"model.num_heads=0", "model.num_heads"},
      {"model.num_layers=0", "model.num_layers"},
      {"model.num_classes=0", "model.num_classes"},
      {"model.representation_size=-1", "model.representation_size"},
      {"model.dropout_rate=-0.1", "model.dropout_rate"},
      {"model.attention_dropout_rate=1.5", "model.attention_dropout_rate"},
      {"model.layer_norm_eps=0", "model.layer_norm_eps"},
      {"model.head_bias_init=nan", "model.head_bias_init"},
      {"data.dir=", "data.dir"},
      {"data.train_images=", "data.train_images"},
      {"data.test_labels=", "data.test_labels"},
      {"data.batch_size=0", "data.batch_size"},
      {"data.eval_batch_size=-5", "data.eval_batch_size"},
      {"data.crop_padding=-1", "data.crop_padding"},
      {"data.mean=inf", "data.mean"},
      {"data.std=0", "data.std"},
      {"data.num_train_examples=-1", "data.num_train_examples"},
      {"data.loader_threads=0", "data.loader_threads"},
      {"data.prefetch_batches=0", "data.prefetch_batches"},
      {"data.inception_area_min=0", "data.inception_area_min"},
      {"data.inception_area_max=1.5", "data.inception_area_max"},
      {"data.mixup_alpha=-1", "data.mixup_alpha"},
      {"optimizer.learning_rate=0", "optimizer.learning_rate"},
      {"optimizer.learning_rate=nan", "optimizer.learning_rate"},
      {"optimizer.b1=1", "optimizer.b1"},
      {"optimizer.b2=-0.5", "optimizer.b2"},
      {"optimizer.eps=0", "optimizer.eps"},
      {"optimizer.weight_decay=-1", "optimizer.weight_decay"},
      {"optimizer.momentum=1", "optimizer.momentum"},
      {"optimizer.grad_clip_norm=-1", "optimizer.grad_clip_norm"},
      {"schedule.warmup_steps=-1", "schedule.warmup_steps"},
      {"schedule.end_learning_rate=-1", "schedule.end_learning_rate"},
      {"train.num_steps=-1", "train.num_steps"},
      {"train.num_epochs=-1", "train.num_epochs"},
      {"train.log_every_steps=0", "train.log_every_steps"},
      {"train.eval_every_steps=-1", "train.eval_every_steps"},
      {"train.threads=-1", "train.threads"},
      {"eval.num_examples=-1", "eval.num_examples"},
      {"output.metrics_file=", "output.metrics_file"},
      {"output.weights_file=", "output.weights_file"},
  };
  for (const auto& [assignment, field] : cases) {
    INFO(assignment);
    const std::string e = override_error(assignment);
    CHECK(e.rfind(field + " must", 0) == 0);
  }
  // validate_config on its own sees the same problems.
  config::Config c = with({});
  c.mutable_data()->set_batch_size(0);
  CHECK(error_of([&] { validate_config(c); }) == "data.batch_size must be in [1, 1048576] (got 0)");
}

TEST_CASE("config: config_to_text round-trips through a file") {
  const config::Config original =
      load_config((configs_dir() / "experiments" / "fashion_vit_ti.textproto").string(),
                  {"name=run \"7\" ü", "model.head_bias_init=-2.5", "train.seed=42",
                   "output.progress=LINES", "optimizer.learning_rate=3e-4"});
  const std::string text = config_to_text(original);
  TempDir dir;
  const config::Config reread = load_config(dir.write("config.textproto", text));
  CHECK(pb::util::MessageDifferencer::Equals(original, reread));
  CHECK(reread.name() == "run \"7\" ü");
  CHECK(reread.optimizer().learning_rate() == 3e-4f);
  CHECK(config_to_text(reread) == text);
  // Fields left unset stay unset (their defaults may change with the schema).
  CHECK_FALSE(reread.data().has_eval_batch_size());
  CHECK_FALSE(with({}).model().has_head_bias_init());
  CHECK_FALSE(load_config(dir.write("empty.textproto", config_to_text(with({}))))
                  .model()
                  .has_head_bias_init());
}

namespace {

// Every floating-point field under `type`, as (dotted path, descriptor path from the root).
void float_fields(
    const pb::Descriptor* type, const std::string& prefix,
    std::vector<const pb::FieldDescriptor*>& chain,
    std::vector<std::pair<std::string, std::vector<const pb::FieldDescriptor*>>>& out) {
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    chain.push_back(f);
    const std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE && !f->is_repeated()) {
      float_fields(f->message_type(), path, chain, out);
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT ||
               f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE) {
      out.emplace_back(path, chain);
    }
    chain.pop_back();
  }
}

// Sets the field at the end of `chain` (creating the messages on the way) to `value`.
void set_float(pb::Message& root, const std::vector<const pb::FieldDescriptor*>& chain,
               double value) {
  pb::Message* m = &root;
  for (size_t i = 0; i + 1 < chain.size(); ++i)
    m = m->GetReflection()->MutableMessage(m, chain[i]);
  const pb::FieldDescriptor* f = chain.back();
  if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
    m->GetReflection()->SetFloat(m, f, float(value));
  } else {
    m->GetReflection()->SetDouble(m, f, value);
  }
}

}  // namespace

TEST_CASE("config: every floating-point field refuses inf, nan and out-of-range values by name") {
  std::vector<const pb::FieldDescriptor*> chain;
  std::vector<std::pair<std::string, std::vector<const pb::FieldDescriptor*>>> fields;
  float_fields(config::Config::descriptor(), "", chain, fields);
  // All of them, not a sample: a field added later is covered without editing this test.
  REQUIRE(fields.size() >= 26);
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& [path, field_chain] : fields) {
    for (const auto& [value, text] : std::vector<std::pair<double, std::string>>{
             {inf, "inf"}, {-inf, "-inf"}, {nan, "nan"}, {1e30, "1e+30"}, {-1e30, "-1e+30"}}) {
      INFO(path << " = " << text);
      config::Config c = with({});
      set_float(c, field_chain, value);
      const std::string e = error_of([&] { validate_config(c); });
      CHECK(e.rfind(path + " must be in ", 0) == 0);
      CHECK(e.find("(got " + text + ")") != std::string::npos);
      CHECK(e.find('\n') == std::string::npos);
    }
    // The same through --set (text parsed as the field's type).
    INFO(path);
    CHECK(override_error(path + "=nan").rfind(path + " must be in ", 0) == 0);
    CHECK(override_error(path + "=inf").rfind(path + " must be in ", 0) == 0);
  }
  // The one check is also the flags' check.
  CHECK(error_of([] {
          check_float(std::numeric_limits<double>::quiet_NaN(), "--capacity-factor",
                      {0, 65536, true});
        }) == "--capacity-factor must be in (0, 65536] (got nan)");
  CHECK(error_of([] {
          check_float(0, "--capacity-factor", {0, 65536, true});
        }) == "--capacity-factor must be in (0, 65536] (got 0)");
  CHECK_NOTHROW(check_float(0.5, "--capacity-factor", {0, 65536, true}));
}

TEST_CASE("config: capacity factors are doubles, read as written") {
  const pb::Descriptor* moe = config::MoeConfig::descriptor();
  CHECK(moe->FindFieldByName("capacity_factor")->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE);
  CHECK(moe->FindFieldByName("eval_capacity_factor")->cpp_type() ==
        pb::FieldDescriptor::CPPTYPE_DOUBLE);
  const config::Config c =
      parse_config_text("model { moe { capacity_factor: 0.4 eval_capacity_factor: 0.6 } }", "t");
  CHECK(c.model().moe().capacity_factor() == 0.4);
  CHECK(c.model().moe().eval_capacity_factor() == 0.6);
  CHECK(with({"model.moe.capacity_factor=0.2"}).model().moe().capacity_factor() == 0.2);
  CHECK(with({"model.moe.eval_capacity_factor=1.2"}).model().moe().eval_capacity_factor() == 1.2);
  CHECK(override_error("model.moe.capacity_factor=0") ==
        "model.moe.capacity_factor must be in (0, 65536] (got 0)");
}

TEST_CASE("config: sizes are bounded so that their products cannot overflow") {
  // Each on its own passes a "> 0" check; together with the others they overflowed 64 bits
  // (tokens x images per group, steps x batch) or asked for absurd buffers.
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"model.image_size=2147483647", "model.patch_size=1"}, "model.image_size must be in"},
      {{"model.image_size=8192", "model.patch_size=1"}, "model.patch_size gives 67108865 tokens"},
      {{"model.moe.images_per_group=2147483647"}, "model.moe.images_per_group must be in"},
      {{"model.patch_size=1", "model.moe.images_per_group=65536"},
       "model.moe.images_per_group makes routing groups of 51445760 tokens"},
      {{"model.moe.num_experts=2147483647"}, "model.moe.num_experts must be in"},
      {{"model.num_classes=2147483647"}, "model.num_classes must be in"},
      {{"model.hidden_size=1073741824", "model.num_heads=1"}, "model.hidden_size must be in"},
      {{"data.batch_size=2147483647"}, "data.batch_size must be in"},
      {{"data.eval_batch_size=2147483647"}, "data.eval_batch_size must be in"},
      {{"data.crop_padding=1000000"}, "data.crop_padding must be in [0, 28]"},
      {{"data.num_train_examples=9223372036854775807"}, "data.num_train_examples must be in"},
      {{"train.num_steps=9223372036854775807"}, "train.num_steps must be in"},
      {{"schedule.warmup_steps=9223372036854775807"}, "schedule.warmup_steps must be in"},
      {{"checkpoint.every_steps=9223372036854775807"}, "checkpoint.every_steps must be in"},
      {{"eval.num_examples=9223372036854775807"}, "eval.num_examples must be in"},
  };
  for (const auto& [overrides, expected] : cases) {
    INFO(overrides.back());
    CHECK(error_of([&] { with(overrides); }).rfind(expected, 0) == 0);
  }
  CHECK_NOTHROW(with({"model.image_size=224", "model.patch_size=14",
                      "model.moe.images_per_group=64", "data.crop_padding=28"}));
}

TEST_CASE("config: thread counts are bounded") {
  CHECK(override_error("train.threads=100000") ==
        "train.threads must be in [0, 1024] (got 100000)");
  CHECK(override_error("data.loader_threads=5000") ==
        "data.loader_threads must be in [1, 1024] (got 5000)");
  CHECK(with({"train.threads=1024", "data.loader_threads=1024"}).train().threads() == 1024);
}

TEST_CASE("config: a router's fields are errors under the routers that ignore them") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"model.moe.router=EXPERTS_CHOICE", "model.moe.k=1"},
       "model.moe.k does not apply to router EXPERTS_CHOICE"},
      {{"model.moe.router=EXPERTS_CHOICE", "model.moe.batch_priority=true"},
       "model.moe.batch_priority does not apply to router EXPERTS_CHOICE"},
      {{"model.moe.router=EXPERTS_CHOICE", "model.moe.load_loss_weight=0.01"},
       "model.moe.load_loss_weight does not apply to router EXPERTS_CHOICE (it has no auxiliary "
       "loss)"},
      {{"model.moe.router=SOFT", "model.moe.batch_priority=true"},
       "model.moe.batch_priority does not apply to router SOFT"},
      {{"model.moe.router=SOFT", "model.moe.eval_capacity_factor=2"},
       "model.moe.eval_capacity_factor does not apply to router SOFT"},
      {{"model.moe.router=SOFT", "model.moe.images_per_group=2"},
       "model.moe.images_per_group does not apply to router SOFT"},
      {{"model.moe.slots_per_expert=4"},
       "model.moe.slots_per_expert does not apply to router TOP_K"},
      {{"model.moe.router=SOFT", "model.moe.slots_per_expert=0"},
       "model.moe.slots_per_expert must be in [1, 65536] (got 0)"},
      {{"model.moe.router=SOFT", "model.moe.dropless=true"},
       "model.moe.dropless does not apply to router SOFT"},
      {{"model.moe.dropless=true", "model.moe.capacity_factor=2"},
       "model.moe.capacity_factor does not apply to router TOP_K with dropless: true"},
      {{"model.moe.dropless=true", "model.moe.eval_batch_priority=true"},
       "model.moe.eval_batch_priority does not apply to router TOP_K with dropless: true"},
  };
  for (const auto& [overrides, message] : cases) {
    INFO(overrides.back());
    const std::string error = error_of([&] { with(overrides); });
    CHECK(error.rfind(message, 0) == 0);
    CHECK(error.find('\n') == std::string::npos);
  }
  // What each router does use is accepted.
  CHECK_NOTHROW(with({"model.moe.router=EXPERTS_CHOICE", "model.moe.capacity_factor=2",
                      "model.moe.eval_capacity_factor=1", "model.moe.noise_std=0.5"}));
  CHECK_NOTHROW(with({"model.moe.router=SOFT", "model.moe.slots_per_expert=2"}));
  CHECK_NOTHROW(with({"model.moe.dropless=true", "model.moe.k=1", "model.moe.noise_std=0"}));
}
