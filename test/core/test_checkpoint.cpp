// Activation checkpointing (core/checkpoint.h): finite-difference gradients through a segment
// (inputs, parameters read by the segment, a secondary output), bit-identical gradients to the
// recorded segment, what the forward keeps, and leaf-readiness reports for the parameters.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "core/autograd.h"
#include "core/checkpoint.h"
#include "core/ops.h"
#include "test/core/gradcheck.h"

using namespace vmoe;

namespace {

// A segment with a parameter `w` it reads from its closure: h = x w, y = tanh(h) * x, and a
// scalar secondary output sum(h^2) / 7, so that h collects gradients from both outputs (three
// parts, whose order of summation matters in floating point).
std::vector<Tensor> segment_body(const Tensor& x, const Tensor& w) {
  Tensor h = matmul(x, w);
  return {tanh(h) * x, sum_all(h * h) * (1.0 / 7.0)};
}

}  // namespace

TEST_CASE("checkpoint: finite-difference gradients of inputs and parameters (f64)") {
  Tensor x = randn({3, 4}, RngKey{11, 1}, 0, DType::f64);
  Tensor w = randn({4, 4}, RngKey{11, 2}, 0, DType::f64) * 0.5;
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  VMOE_CHECK_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        const Tensor param = in[1];
        const SegmentFn fn = [param](const std::vector<Tensor>& inputs, CheckpointPass) {
          return segment_body(inputs[0], param);
        };
        const std::vector<Tensor> out = checkpoint(fn, {in[0]}, {param});
        // Both outputs reach the loss: the secondary one through its own node.
        return out[0] + out[1];
      },
      (std::vector<Tensor>{x, w}));
}

TEST_CASE("checkpoint: gradients are bit-identical to the recorded segment") {
  for (DType dtype : {DType::f32, DType::f64}) {
    std::vector<std::vector<double>> grads;
    for (bool recompute : {false, true}) {
      Tensor x0 = randn({16, 8}, RngKey{12, 1}, 0, dtype);
      Tensor w = randn({8, 8}, RngKey{12, 2}, 0, dtype);
      Tensor a = randn({8, 8}, RngKey{12, 3}, 0, dtype);
      x0.set_requires_grad(true);
      w.set_requires_grad(true);
      a.set_requires_grad(true);
      // Something before and after the segment; its input is used by the segment only (as
      // an encoder block's), so that input's gradient sums in the same order.
      Tensor x = matmul(x0, a);
      std::vector<Tensor> out;
      if (recompute) {
        out = checkpoint(
            [w](const std::vector<Tensor>& in, CheckpointPass) { return segment_body(in[0], w); },
            {x}, {w});
      } else {
        out = segment_body(x, w);
      }
      Tensor loss = sum_all(sigmoid(out[0]) * out[0]) + out[1];
      loss.backward();
      grads.push_back({});
      for (const Tensor& t : {x0, w, a}) {
        const std::vector<double> g = to_dtype(t.grad(), DType::f64).cpu().to_vector<double>();
        grads.back().insert(grads.back().end(), g.begin(), g.end());
      }
    }
    CHECK(grads[0] == grads[1]);
  }
}

TEST_CASE("checkpoint: the forward runs unrecorded and backward re-runs the segment once") {
  Tensor x = randn({4, 4}, RngKey{13, 1}, 0, DType::f64);
  Tensor w = randn({4, 4}, RngKey{13, 2}, 0, DType::f64);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  int forward = 0, recompute = 0;
  bool recorded_in_forward = true, recorded_in_recompute = false;
  const SegmentFn fn = [&](const std::vector<Tensor>& in, CheckpointPass pass) {
    std::vector<Tensor> out = segment_body(in[0], w);
    if (pass == CheckpointPass::forward) {
      ++forward;
      recorded_in_forward = bool(out[0].grad_fn());
    } else {
      ++recompute;
      recorded_in_recompute = bool(out[0].grad_fn());
    }
    return out;
  };
  std::vector<Tensor> out = checkpoint(fn, {x}, {w});
  CHECK(forward == 1);
  CHECK(recompute == 0);
  CHECK_FALSE(recorded_in_forward);
  // One node stands for the segment, its inputs the segment's input and parameter.
  REQUIRE(out[0].grad_fn());
  CHECK(std::string(out[0].grad_fn()->name()) == "checkpoint");
  CHECK(out[0].grad_fn()->inputs().size() == 2);
  sum_all(out[0]).backward();
  CHECK(recompute == 1);
  CHECK(recorded_in_recompute);
  CHECK(w.grad().defined());
  CHECK(x.grad().defined());

  // Without recording the segment is just called.
  NoGrad no_grad;
  const std::vector<Tensor> plain = checkpoint(fn, {x}, {w});
  CHECK_FALSE(plain[0].grad_fn());
  CHECK(recompute == 1);
}

TEST_CASE("checkpoint: the outer sweep reports the segment's parameters as ready") {
  Tensor x = randn({4, 4}, RngKey{14, 1}, 0, DType::f64);
  Tensor w = randn({4, 4}, RngKey{14, 2}, 0, DType::f64);
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  const std::vector<Tensor> out = checkpoint(
      [w](const std::vector<Tensor>& in, CheckpointPass) { return segment_body(in[0], w); }, {x},
      {w});
  std::vector<const void*> ready;
  bool w_grad_final_when_reported = false;
  {
    LeafGradReadyHook hook([&](const Tensor& leaf) {
      ready.push_back(leaf.impl().get());
      if (leaf.impl() == w.impl()) w_grad_final_when_reported = leaf.grad().defined();
    });
    sum_all(out[0]).backward();
  }
  // w is read only inside the segment: reported once, after its gradient was added.
  CHECK(std::count(ready.begin(), ready.end(), w.impl().get()) == 1);
  CHECK(std::count(ready.begin(), ready.end(), x.impl().get()) == 1);
  CHECK(w_grad_final_when_reported);
}

TEST_CASE("checkpoint: a segment without a first output is an error") {
  Tensor x = randn({2, 2}, RngKey{15, 1}, 0, DType::f64);
  x.set_requires_grad(true);
  CHECK_THROWS_WITH(
      checkpoint([](const std::vector<Tensor>&, CheckpointPass) { return std::vector<Tensor>{}; },
                 {x}),
      Catch::Contains("first output must be defined"));
}
