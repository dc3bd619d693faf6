// The training losses of launch/train_step.h: soft-target (mixup) cross-entropy against its
// hard-label special case, its gradient by finite differences, and its error cases.
#include <catch2/catch.hpp>

#include "core/ops.h"
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
  const double hard = classification_loss(logits, labels, LossKind::softmax_xent).item();
  const double soft =
      soft_target_loss(logits, Tensor::from_vector(onehot, {5, 4}), LossKind::softmax_xent).item();
  CHECK(soft == Approx(hard).epsilon(1e-12));
}

TEST_CASE("train step: a mixed target is the same mixture of the two cross-entropies") {
  const Tensor logits = randn({1, 3}, RngKey{4, 1}, 0, DType::f64);
  const double lam = 0.3;
  const Tensor mixed = Tensor::from_vector(std::vector<double>{lam, 0.0, 1 - lam}, {1, 3});
  const double a = classification_loss(logits, Tensor::from_vector(std::vector<int32_t>{0}, {1}),
                                       LossKind::softmax_xent)
                       .item();
  const double b = classification_loss(logits, Tensor::from_vector(std::vector<int32_t>{2}, {1}),
                                       LossKind::softmax_xent)
                       .item();
  CHECK(soft_target_loss(logits, mixed, LossKind::softmax_xent).item() ==
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
