// Activation recomputation (model.recompute BLOCKS, core/checkpoint.h) in the Vision
// Transformer: the same forward and bit-identical parameter gradients as keeping every
// activation (V-MoE with dropout, routing noise, BPR and every auxiliary loss), the MoE
// reports unchanged, and a lower peak of the allocator's in-use memory.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "models/vision_transformer.h"
#include "test/small_vit.h"

using namespace vmoe;

namespace {

// test/small_vit.h's V-MoE, 4 blocks, MoE in 1 and 3, with BPR and a GShard loss.
VitConfig small_vmoe(VitConfig::Recompute recompute) {
  VitConfig c = testing::small_vmoe(4, {1, 3});
  c.moe->batch_priority = true;
  c.moe->gshard_loss_weight = 0.01;
  c.recompute = recompute;
  return c;
}

struct Pass {
  std::vector<float> logits, grads, stats;
  std::vector<bool> report_aux_differentiable;
  double aux = 0;
};

// One training forward (loss + aux) and backward of `config` from initialisation seed 5.
Pass forward_backward(const VitConfig& config, Precision precision) {
  ParameterStore params;
  VisionTransformer model(params, config);
  params.allocate(5);
  const Tensor images = randn({8, config.image_size, config.image_size, 1}, RngKey{6, 1}, 0);
  std::vector<int32_t> y(8);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = int32_t(i % 10);
  ForwardContext ctx{Mode::train, RngKey{7, 3}, 40};
  ctx.precision = precision;
  VitOutput out = model(images, ctx);
  Tensor loss = softmax_cross_entropy(out.logits, Tensor::from_vector(y, {8})) + out.aux_loss;
  loss.backward();
  Pass p;
  p.logits = to_dtype(out.logits.detach(), DType::f32).cpu().to_vector<float>();
  p.grads = params.flat_grads(Sharding::replicated).cpu().to_vector<float>();
  const std::vector<float> experts = params.flat_grads(Sharding::expert).cpu().to_vector<float>();
  p.grads.insert(p.grads.end(), experts.begin(), experts.end());
  for (const MoeReport& m : out.moe) {
    const std::vector<float> s = to_dtype(m.stats, DType::f32).cpu().to_vector<float>();
    p.stats.insert(p.stats.end(), s.begin(), s.end());
    p.report_aux_differentiable.push_back(m.aux_loss.requires_grad());
  }
  p.aux = to_dtype(out.aux_loss.detach(), DType::f64).cpu().item();
  return p;
}

// Peak in-use bytes of the CPU allocator above what was in use before, over one training
// forward and backward of a dense ViT (8 blocks, batch 32).
int64_t peak_activation_bytes(VitConfig::Recompute recompute) {
  VitConfig c;
  c.image_size = 28;
  c.patch_size = 4;
  c.hidden_size = 64;
  c.mlp_dim = 256;
  c.num_layers = 8;
  c.recompute = recompute;
  ParameterStore params;
  VisionTransformer model(params, c);
  params.allocate(1, DType::f32, kCpu);
  const Tensor images = randn({32, 28, 28, 1}, RngKey{2, 1}, 0, DType::f32, kCpu);
  std::vector<int32_t> y(32, 3);
  const Tensor labels = Tensor::from_vector(y, {32}, kCpu);
  Allocator& allocator = *backend_for(kCpu).allocator;
  const int64_t before = allocator.stats().in_use_bytes;
  allocator.reset_peak();
  {
    VitOutput out = model(images, ForwardContext{Mode::train, RngKey{3, 1}, 0});
    softmax_cross_entropy(out.logits, labels).backward();
  }
  return allocator.stats().peak_in_use_bytes - before;
}

}  // namespace

TEST_CASE("recompute: a V-MoE with dropout has bit-identical gradients with and without") {
  for (Precision precision : {Precision::f32, Precision::bf16}) {
    INFO("precision " << precision_name(precision));
    const Pass kept = forward_backward(small_vmoe(VitConfig::Recompute::none), precision);
    const Pass recomputed = forward_backward(small_vmoe(VitConfig::Recompute::blocks), precision);
    REQUIRE(kept.grads.size() == recomputed.grads.size());
    // Every parameter gradient, element by element, exactly.
    size_t differing = 0;
    for (size_t i = 0; i < kept.grads.size(); ++i)
      differing += kept.grads[i] != recomputed.grads[i];
    CHECK(differing == 0);
    CHECK(kept.logits == recomputed.logits);
    CHECK(kept.aux == recomputed.aux);
    // The MoE reports: same statistics, and the aux loss they carry still differentiable.
    CHECK(kept.stats == recomputed.stats);
    CHECK(recomputed.report_aux_differentiable == std::vector<bool>{true, true});
    // Dropout and noise were on: the gradient is not that of a deterministic forward.
    VitConfig quiet = small_vmoe(VitConfig::Recompute::blocks);
    quiet.dropout_rate = quiet.attention_dropout_rate = 0;
    CHECK(forward_backward(quiet, precision).grads != recomputed.grads);
  }
}

TEST_CASE("recompute: evaluation and recording-off forwards are unchanged") {
  ParameterStore a, b;
  VisionTransformer kept(a, small_vmoe(VitConfig::Recompute::none));
  VisionTransformer recomputed(b, small_vmoe(VitConfig::Recompute::blocks));
  a.allocate(9);
  b.allocate(9);
  const Tensor images = randn({4, 16, 16, 1}, RngKey{8, 1}, 0);
  for (Mode mode : {Mode::eval, Mode::train}) {
    NoGrad no_grad;
    const ForwardContext ctx{mode, RngKey{1, 2}, 0};
    CHECK(kept(images, ctx).logits.cpu().to_vector<float>() ==
          recomputed(images, ctx).logits.cpu().to_vector<float>());
  }
}

TEST_CASE("recompute: blocks lower the peak memory of forward and backward") {
  const int64_t kept = peak_activation_bytes(VitConfig::Recompute::none);
  const int64_t recomputed = peak_activation_bytes(VitConfig::Recompute::blocks);
  WARN("peak in-use bytes over forward + backward (8 blocks, batch 32): kept "
       << kept << ", recomputed " << recomputed);
  // 8 blocks' activations against their 8 inputs plus one block's activations.
  CHECK(recomputed < kept / 2);
}
