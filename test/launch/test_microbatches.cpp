// Gradient accumulation (train.microbatches, launch/train_step.h): M micro-batches give the
// one-pass update and step figures to float rounding (V-MoE with dropout and routing noise,
// dense ViT with soft targets), with a lower activation peak; bad splits are clear errors, in
// train_step and in the config's validation.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "configs/config.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/optim/adamw.h"
#include "core/transfer_counts.h"
#include "launch/train_step.h"
#include "test/small_vit.h"

using namespace vmoe;
using vmoe::testing::max_abs_diff;

namespace {

// test/small_vit.h's model, 4 blocks; with `moe`, MoE blocks 1 and 3 with BPR and a GShard loss.
VitConfig small_model(bool moe) {
  if (!moe) return testing::small_vit(4);
  VitConfig c = testing::small_vmoe(4, {1, 3});
  c.moe->batch_priority = true;
  c.moe->gshard_loss_weight = 0.01;
  return c;
}

struct Run {
  std::vector<double> params;  // every parameter after the steps
  StepFigures figures;         // of the last step
  int64_t peak_bytes = 0;      // the allocator's in-use peak above the start, over the steps
};

// Two AdamW steps (clipped at 1) of `config` in f64 on 16 images starting at global example 32,
// the batch as `microbatches` micro-batches; soft (mixup-like) targets when `soft`.
Run train(const VitConfig& config, int64_t microbatches, bool soft) {
  ParameterStore params;
  VisionTransformer model(params, config);
  params.allocate(3, DType::f64);
  AdamW optimizer(params, AdamWOptions{});
  const LrSchedule schedule{LrSchedule::Kind::constant, 1e-3};
  const Tensor images = randn({16, 16, 16, 1}, RngKey{4, 1}, 0);
  std::vector<int32_t> y(16);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = int32_t((i * 7) % 10);
  const Tensor labels = Tensor::from_vector(y, {16});
  const Tensor targets = soft ? softmax(randn({16, 10}, RngKey{4, 2}, 0) * 3.0) : Tensor();
  StepOptions options;
  options.grad_clip_norm = 1.0;
  options.microbatches = microbatches;
  Allocator& allocator = *backend_for(params.device()).allocator;
  const int64_t before = allocator.stats().in_use_bytes;
  allocator.reset_peak();
  Run run;
  for (int64_t step = 0; step < 2; ++step) {
    const StepResult r =
        train_step(model, params, optimizer, schedule, images, labels, step, 32, options, targets);
    if (step == 1) run.figures = r.read();
  }
  run.peak_bytes = allocator.stats().peak_in_use_bytes - before;
  for (Sharding s : {Sharding::replicated, Sharding::expert}) {
    const std::vector<double> v = params.flat_values(s).cpu().to_vector<double>();
    run.params.insert(run.params.end(), v.begin(), v.end());
  }
  return run;
}

// The figures of M micro-batches against the one-pass step's: the means (losses, MoE
// statistics) to f64 rounding, the counts (hits, load max / mean) exactly.
void check_same_figures(const StepFigures& a, const StepFigures& b) {
  const double tol = 1e-12;
  CHECK(a.loss == Approx(b.loss).epsilon(tol));
  CHECK(a.aux_loss == Approx(b.aux_loss).epsilon(tol).margin(1e-300));
  CHECK(a.grad_norm == Approx(b.grad_norm).epsilon(tol));
  CHECK(a.correct == b.correct);
  REQUIRE(a.moe.size() == b.moe.size());
  for (size_t l = 0; l < a.moe.size(); ++l) {
    CHECK(a.moe[l].block == b.moe[l].block);
    CHECK(a.moe[l].importance_loss == Approx(b.moe[l].importance_loss).epsilon(tol));
    CHECK(a.moe[l].load_loss == Approx(b.moe[l].load_loss).epsilon(tol));
    CHECK(a.moe[l].gshard_loss == Approx(b.moe[l].gshard_loss).epsilon(tol));
    CHECK(a.moe[l].dropped_fraction == Approx(b.moe[l].dropped_fraction).epsilon(tol));
    CHECK(a.moe[l].load_max_over_mean == b.moe[l].load_max_over_mean);
  }
}

std::string config_error(const std::string& text) {
  try {
    config::parse_config_text(text, "t.textproto");
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Tolerance: in f64 the two runs differ only in the order of sums (a mean over 16 examples
// against four means over 4 scaled by 1/4, gradients summed over micro-batches), about 1e-16
// relative. AdamW's first updates are lr * m / (sqrt(v) + eps) with |m| / sqrt(v) ~ 1, so a
// gradient's rounding moves a parameter by far less than lr * 1e-10 = 1e-13; 1e-12 in values
// of order 1 allows that and would still catch a wrong scale, a missed or doubled micro-batch.
TEST_CASE("microbatches: 4 micro-batches give the one-pass update of a V-MoE with noise") {
  const Run one = train(small_model(true), 1, false);
  const Run four = train(small_model(true), 4, false);
  CHECK(max_abs_diff(one.params, four.params) < 1e-12);
  check_same_figures(four.figures, one.figures);
  CHECK(one.figures.aux_loss > 0);
  CHECK(one.figures.moe.size() == 2);
  // The micro-batches really ran one after the other: a lower activation peak.
  CHECK(four.peak_bytes < one.peak_bytes);
  // 2 micro-batches (4 routing groups each) agree as well.
  CHECK(max_abs_diff(one.params, train(small_model(true), 2, false).params) < 1e-12);
}

TEST_CASE("microbatches: a dense ViT with soft targets gets the one-pass update") {
  const Run one = train(small_model(false), 1, true);
  const Run four = train(small_model(false), 4, true);
  CHECK(max_abs_diff(one.params, four.params) < 1e-12);
  check_same_figures(four.figures, one.figures);
  CHECK(four.figures.aux_loss == 0);
  // 16 micro-batches of one image each.
  CHECK(max_abs_diff(one.params, train(small_model(false), 16, true).params) < 1e-12);
}

TEST_CASE("microbatches: a split into parts or partial routing groups is an error") {
  CHECK_NOTHROW(check_microbatches(16, 4, 2));
  CHECK_NOTHROW(check_microbatches(16, 16, 1));
  CHECK_THROWS_WITH(check_microbatches(16, 3, 1), Catch::Contains("train.microbatches 3"));
  CHECK_THROWS_WITH(check_microbatches(16, 0, 1), Catch::Contains("must be >= 1"));
  // 16 images in 8 micro-batches are 2 images each, not whole groups of 4.
  CHECK_THROWS_WITH(check_microbatches(16, 8, 4),
                    Catch::Contains("train.microbatches 8") &&
                        Catch::Contains("whole routing groups of 4 images"));
  // train_step checks before it computes anything.
  ParameterStore params;
  VisionTransformer model(params, small_model(true));
  params.allocate(3, DType::f64);
  AdamW optimizer(params, AdamWOptions{});
  StepOptions options;
  options.microbatches = 16;  // one image each, routing groups of 2
  const Tensor images = randn({16, 16, 16, 1}, RngKey{4, 1}, 0);
  const Tensor labels = Tensor::from_vector(std::vector<int32_t>(16, 0), {16});
  CHECK_THROWS_WITH(
      train_step(model, params, optimizer, LrSchedule{LrSchedule::Kind::constant, 1e-3}, images,
                 labels, 0, 0, options),
      Catch::Contains("train.microbatches 16"));
}

TEST_CASE("microbatches: the config's validation names train.microbatches") {
  CHECK(config_error("train { microbatches: 4 } data { batch_size: 32 }").empty());
  CHECK(config_error("train { microbatches: 0 }").find("train.microbatches") != std::string::npos);
  CHECK(config_error("train { microbatches: -2 }").find("train.microbatches") != std::string::npos);
  const std::string not_dividing =
      config_error("train { microbatches: 3 } data { batch_size: 32 }");
  CHECK(not_dividing.find("train.microbatches must divide data.batch_size") != std::string::npos);
  CHECK(not_dividing.find("3 and 32") != std::string::npos);
  // V-MoE: micro-batches of whole routing groups (8 images here).
  const std::string moe = "model { moe { images_per_group: 8 } } data { batch_size: 32 } ";
  CHECK(config_error(moe + "train { microbatches: 4 }").empty());
  const std::string partial = config_error(moe + "train { microbatches: 8 }");
  CHECK(partial.find("train.microbatches 8") != std::string::npos);
  CHECK(partial.find("model.moe.images_per_group") != std::string::npos);
  CHECK(partial.find('\n') == std::string::npos);
  // The default is one pass.
  CHECK(config::parse_config_text("", "t").train().microbatches() == 1);
}

TEST_CASE("device: a step of 4 micro-batches reads nothing back and writes nothing") {
  ParameterStore params;
  VisionTransformer model(params, small_model(true));
  params.allocate(3, DType::f32, kCpuStrict);
  AdamW optimizer(params, AdamWOptions{});
  const Tensor images = randn({16, 16, 16, 1}, RngKey{4, 1}, 0, DType::f32, kCpuStrict);
  const Tensor labels = Tensor::from_vector(std::vector<int32_t>(16, 1), {16}, kCpuStrict);
  StepOptions options;
  options.microbatches = 4;
  const TransferCounter transfers(kCpuStrict);
  const StepResult r =
      train_step(model, params, optimizer, LrSchedule{LrSchedule::Kind::constant, 1e-3}, images,
                 labels, 0, 0, options);
  CHECK(transfers.now().to_host == 0);
  CHECK(transfers.now().from_host == 0);
  CHECK(transfers.now().synchronizations == 0);
  // Read once: 16 hits at most.
  CHECK(r.read().correct <= 16);
}
