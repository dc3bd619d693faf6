// The model on a GPU against the same model on the CPU: the MoE layer's forward and backward,
// and 20 training steps of a small V-MoE (f32 and bf16 mixed precision). Hidden tests
// ([.][cuda]): test/gpu/check.sh runs `test_gpu "[cuda]"` on a GPU machine.
//
// Tolerances: the GPU sums in other orders than the CPU (block trees, cuBLASLt's split-k), so
// f32 results agree to ~1e-6 relative per op; over 20 Adam steps with lr 1e-3 the losses drift
// apart by far less than 1e-3 unless a routing decision flips on a near-tie, which these seeds
// and the router noise make unlikely. bf16 steps round every activation to 8 bits of mantissa on
// both sides alike, so the two runs stay within bf16's 2^-8 relative step of each other.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/optim/adamw.h"
#include "launch/train_step.h"
#include "models/moe_layer.h"

using namespace vmoe;

namespace {

constexpr Device kCuda{DeviceType::cuda, 0};

// Largest |a - b| / (1 + |b|) over two tensors of one shape (read to the host).
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.cpu().to(DType::f64).to_vector<double>();
  const std::vector<double> y = b.cpu().to(DType::f64).to_vector<double>();
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  return worst;
}

VitConfig small_vmoe() {
  VitConfig cfg;  // fashion_vmoe_ti's shapes: 28 px, patch 4, D 64, 4 blocks
  MoeConfig moe;
  moe.num_experts = 4;
  moe.k = 2;
  moe.images_per_group = 4;
  moe.moe_blocks = every_n_blocks(cfg.num_layers, 2);
  cfg.moe = moe;
  return cfg;
}

// The step figures (loss, aux loss, grad norm) of `steps` training steps on `device`.
std::vector<StepFigures> train_steps(Device device, Precision precision, int steps) {
  const VitConfig cfg = small_vmoe();
  ParameterStore params;
  VisionTransformer model(params, cfg);
  params.allocate(7, DType::f32, device);
  AdamW opt(params, AdamWOptions{.weight_decay = 1e-4});
  const LrSchedule schedule{LrSchedule::Kind::constant, 1e-3};
  const int64_t batch = 32;
  const Tensor images =
      randn({batch, cfg.image_size, cfg.image_size, cfg.channels}, RngKey{3, 1}).to(device);
  std::vector<int32_t> labels(size_t(batch), 0);
  for (int64_t i = 0; i < batch; ++i)
    labels[size_t(i)] = int32_t((i * 7) % cfg.num_classes);
  const Tensor y = Tensor::from_vector(labels, {batch}, device);
  StepOptions options;
  options.seed = 11;
  options.precision = precision;
  std::vector<StepFigures> figures;
  for (int s = 0; s < steps; ++s) {
    const StepResult r = train_step(model, params, opt, schedule, images, y, s, 0, options);
    figures.push_back(r.read());
  }
  return figures;
}

}  // namespace

TEST_CASE("cuda training: the MoE layer's forward and backward equal the CPU's", "[.][cuda]") {
  MoeConfig c;
  c.num_experts = 8;
  c.k = 2;
  c.images_per_group = 4;
  c.moe_blocks = {0};
  std::vector<Tensor> outs, input_grads, kernel_grads;
  for (Device device : {kCpu, kCuda}) {
    ParameterStore store;
    MoeLayer layer(store, "moe", 64, 128, 50, c);
    store.allocate(5, DType::f32, device);
    Tensor x = randn({16, 50, 64}, RngKey{1, 1}).to(device).set_requires_grad(true);
    const Tensor r = randn({16, 50, 64}, RngKey{1, 2}).to(device);
    const ForwardContext ctx{Mode::train, RngKey{2, 0}, 0};
    const FeedForwardOutput y = layer(x, ctx, 0);
    (sum_all(y.out * r) + y.aux_loss).backward();
    outs.push_back(y.out.detach());
    input_grads.push_back(x.grad());
    kernel_grads.push_back(store.grad(store.infos().front().name));
  }
  CHECK(max_rel_diff(outs[1], outs[0]) < 1e-4);
  CHECK(max_rel_diff(input_grads[1], input_grads[0]) < 1e-4);
  CHECK(max_rel_diff(kernel_grads[1], kernel_grads[0]) < 1e-4);
}

TEST_CASE("cuda training: 20 steps of a small V-MoE give the CPU's losses", "[.][cuda]") {
  for (Precision precision : {Precision::f32, Precision::bf16}) {
    const std::vector<StepFigures> cpu = train_steps(kCpu, precision, 20);
    const std::vector<StepFigures> gpu = train_steps(kCuda, precision, 20);
    const double tolerance = precision == Precision::f32 ? 1e-3 : 1.0 / 128;
    for (size_t s = 0; s < cpu.size(); ++s) {
      CAPTURE(int(precision), s);
      CHECK(std::abs(gpu[s].loss - cpu[s].loss) <= tolerance * std::abs(cpu[s].loss));
      CHECK(std::abs(gpu[s].aux_loss - cpu[s].aux_loss) <= tolerance * std::abs(cpu[s].aux_loss));
      CHECK(std::abs(gpu[s].grad_norm - cpu[s].grad_norm) <=
            10 * tolerance * std::abs(cpu[s].grad_norm));
    }
  }
}
