// The training losses of launch/train_step.h: soft-target (mixup) cross-entropy against its
// hard-label special case, its gradient by finite differences, and its error cases.
#include <catch2/catch.hpp>

#include "core/ops.h"
#include "core/optim/adamw.h"
#include "core/transfer_counts.h"
#include "launch/train_step.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

TEST_CASE("train step: soft targets equal to one-hot labels give the softmax cross-entropy") {
  const Tensor logits = randn({5, 4}, RngKey{3, 1}, 0, DType::f64);
  const std::vector<int32_t> y{0, 3, 1, 1, 2};
  std::vector<double> onehot(20, 0.0);
  for (size_t i = 0; i < y.size(); ++i)
    onehot[i * 4 + size_t(y[i])] = 1.0;
  const Tensor labels = Tensor::from_vector(y, {5});
  const double hard = classification_loss(logits, labels, LossKind::softmax_xent).cpu().item();
  const double soft =
      soft_target_loss(logits, Tensor::from_vector(onehot, {5, 4}), LossKind::softmax_xent)
          .cpu()
          .item();
  CHECK(soft == Approx(hard).epsilon(1e-12));
}

TEST_CASE("train step: a mixed target is the same mixture of the two cross-entropies") {
  const Tensor logits = randn({1, 3}, RngKey{4, 1}, 0, DType::f64);
  const double lam = 0.3;
  const Tensor mixed = Tensor::from_vector(std::vector<double>{lam, 0.0, 1 - lam}, {1, 3});
  const double a = classification_loss(logits, Tensor::from_vector(std::vector<int32_t>{0}, {1}),
                                       LossKind::softmax_xent)
                       .cpu()
                       .item();
  const double b = classification_loss(logits, Tensor::from_vector(std::vector<int32_t>{2}, {1}),
                                       LossKind::softmax_xent)
                       .cpu()
                       .item();
  CHECK(soft_target_loss(logits, mixed, LossKind::softmax_xent).cpu().item() ==
        Approx(lam * a + (1 - lam) * b).epsilon(1e-12));
}

TEST_CASE("train step: the soft-target loss has the finite-difference gradient (f64)") {
  Tensor logits = randn({4, 5}, RngKey{5, 1}, 0, DType::f64);
  logits.set_requires_grad(true);
  Tensor targets = softmax(randn({4, 5}, RngKey{5, 2}, 0, DType::f64));
  VMOE_CHECK_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return soft_target_loss(in[0], in[1], LossKind::softmax_xent);
      },
      (std::vector<Tensor>{logits, targets}));
}

TEST_CASE("train step: soft targets with the sigmoid loss or the wrong shape are errors") {
  const Tensor logits = Tensor::zeros({2, 3}, DType::f64);
  CHECK_THROWS_WITH(
      soft_target_loss(logits, Tensor::zeros({2, 3}, DType::f64), LossKind::sigmoid_xent),
      Catch::Contains("needs train.loss SOFTMAX_XENT"));
  CHECK_THROWS_WITH(
      soft_target_loss(logits, Tensor::zeros({2, 4}, DType::f64), LossKind::softmax_xent),
      Catch::Contains("do not match logits"));
}

namespace {

// fashion_vmoe_ti's shape (D 64, E 8, k 2) with BPR, noise and a GShard loss: every routing
// path; `layers` blocks, MoE in `moe_blocks`; parameters and a batch of 16 images on `device`.
struct TinyVmoe {
  ParameterStore params;
  std::unique_ptr<VisionTransformer> model;
  std::unique_ptr<AdamW> optimizer;
  LrSchedule schedule{LrSchedule::Kind::constant, 1e-3};
  Tensor images, labels;

  TinyVmoe(int64_t layers, std::vector<int64_t> moe_blocks, Device device) {
    VitConfig c;
    c.num_layers = layers;
    MoeConfig moe;
    moe.moe_blocks = std::move(moe_blocks);
    moe.batch_priority = true;
    moe.gshard_loss_weight = 0.01;
    c.moe = moe;
    model = std::make_unique<VisionTransformer>(params, c);
    params.allocate(0, DType::f32, device);
    optimizer = std::make_unique<AdamW>(params, AdamWOptions{});
    images = randn({16, 28, 28, 1}, RngKey{1, 1}, 0, DType::f32, device);
    std::vector<int32_t> y(16);
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = int32_t(i % 10);
    labels = Tensor::from_vector(y, {16}, device);
  }

  StepResult steps(int64_t n, double clip) {
    StepOptions options;
    options.grad_clip_norm = clip;
    StepResult r;
    for (int64_t step = 0; step < n; ++step)
      r = train_step(*model, params, *optimizer, schedule, images, labels, step, 0, options);
    return r;
  }
};

}  // namespace

TEST_CASE("device: a V-MoE training step reads nothing back, a logged step reads once") {
  // fashion_vmoe_ti's shape (4 blocks, MoE in 1 and 3) on the strict device, where every
  // device -> host copy is counted.
  TinyVmoe run(4, {1, 3}, kCpuStrict);
  const TransferCounter transfers(kCpuStrict);
  const StepResult r = run.steps(2, 1.0);
  // Forward, backward, gradient norm, clipped update and the step's figures: all on the device.
  CHECK(transfers.now().to_host == 0);
  CHECK(transfers.now().from_host == 0);
  CHECK(transfers.now().synchronizations == 0);
  // A logging step reads the figures vector once: loss, aux loss, grad norm, hits and five
  // figures of each MoE layer.
  const StepFigures f = r.read();
  CHECK(transfers.now().to_host == 1);
  CHECK(transfers.now().to_host_bytes ==
        int64_t(sizeof(double)) * (kStepFigures + 2 * kMoeFigures));
  CHECK(std::isfinite(f.loss));
  CHECK(f.grad_norm > 0);
  REQUIRE(f.moe.size() == 2);
  CHECK(f.moe[0].block == 1);
  CHECK(f.moe[1].load_max_over_mean >= 1.0);
}

TEST_CASE("device: the train step computes the same figures on the CPU and the strict device") {
  std::vector<StepFigures> figures;
  std::vector<std::vector<float>> weights;
  for (Device device : {kCpu, kCpuStrict}) {
    TinyVmoe run(2, {1}, device);
    figures.push_back(run.steps(3, 0.5).read());
    weights.push_back(run.params.flat_values(Sharding::replicated).cpu().to_vector<float>());
  }
  CHECK(figures[0].loss == figures[1].loss);
  CHECK(figures[0].grad_norm == figures[1].grad_norm);
  CHECK(figures[0].moe[0].dropped_fraction == figures[1].moe[0].dropped_fraction);
  CHECK(weights[0] == weights[1]);
}
