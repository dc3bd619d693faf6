// Experts Choice routing (models/moe_experts_choice.cpp): against a direct host computation of
// the published rule (each expert takes its C best tokens of the group), tie order, capacity
// and test-time capacity, the report, and f64 finite-difference gradients.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "models/moe_layer.h"
#include "test/models/small_moe.h"

using namespace vmoe;
using vmoe::testing::measure_training_forward;
using vmoe::testing::MeasuredForward;
using vmoe::testing::planned_kept_bytes;
using vmoe::testing::SmallMoe;
using vmoe::testing::worst_gradient_error;

namespace {

MoeConfig experts_choice(int64_t experts, double capacity_factor, int64_t images_per_group) {
  MoeConfig c;
  c.router = MoeRouter::experts_choice;
  c.num_experts = experts;
  c.k = 1;
  c.capacity_factor = c.eval_capacity_factor = capacity_factor;
  c.images_per_group = images_per_group;
  c.importance_loss_weight = c.load_loss_weight = 0;
  return c;
}

double gelu_tanh(double v) {
  return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

// The layer's evaluation output computed on the host from its parameters: softmax over experts
// per token, each expert's C best tokens per group (stable: ties to the lower token), output =
// sum over the experts that took the token of p * MLP_e(x).
std::vector<double> reference(const SmallMoe& m, const std::vector<double>& x, int64_t n, int64_t d,
                              int64_t group, double capacity_factor, std::vector<int64_t>* load) {
  auto v = [&](const char* name) { return m.store.value(name).cpu().to_vector<double>(); };
  const std::vector<double> w = v("moe/router/kernel"), w1 = v("moe/experts/fc1/kernel"),
                            b1 = v("moe/experts/fc1/bias"), w2 = v("moe/experts/fc2/kernel"),
                            b2 = v("moe/experts/fc2/bias");
  const int64_t e = m.store.value("moe/router/kernel").size(1);
  const int64_t mlp = int64_t(b1.size()) / e;
  std::vector<double> p(size_t(n * e));
  for (int64_t i = 0; i < n; ++i) {
    double top = -1e300, sum = 0;
    for (int64_t j = 0; j < e; ++j) {
      double l = 0;
      for (int64_t q = 0; q < d; ++q)
        l += x[size_t(i * d + q)] * w[size_t(q * e + j)];
      p[size_t(i * e + j)] = l;
      top = std::max(top, l);
    }
    for (int64_t j = 0; j < e; ++j)
      sum += (p[size_t(i * e + j)] = std::exp(p[size_t(i * e + j)] - top));
    for (int64_t j = 0; j < e; ++j)
      p[size_t(i * e + j)] /= sum;
  }
  std::vector<double> out(size_t(n * d), 0.0);
  load->assign(size_t(e), 0);
  for (int64_t g0 = 0; g0 < n; g0 += group) {
    const int64_t s = std::min(group, n - g0);
    const int64_t c = std::min(s, expert_capacity(s, 1, capacity_factor, e));
    for (int64_t j = 0; j < e; ++j) {
      std::vector<int64_t> tokens(static_cast<size_t>(s));
      std::iota(tokens.begin(), tokens.end(), g0);
      std::stable_sort(tokens.begin(), tokens.end(), [&](int64_t a, int64_t b) {
        return p[size_t(a * e + j)] > p[size_t(b * e + j)];
      });
      for (int64_t slot = 0; slot < c; ++slot) {
        const int64_t tok = tokens[size_t(slot)];
        (*load)[size_t(j)] += 1;
        std::vector<double> h(static_cast<size_t>(mlp));
        for (int64_t u = 0; u < mlp; ++u) {
          double acc = b1[size_t(j * mlp + u)];
          for (int64_t q = 0; q < d; ++q)
            acc += x[size_t(tok * d + q)] * w1[size_t((j * d + q) * mlp + u)];
          h[size_t(u)] = gelu_tanh(acc);
        }
        for (int64_t q = 0; q < d; ++q) {
          double acc = b2[size_t(j * d + q)];
          for (int64_t u = 0; u < mlp; ++u)
            acc += h[size_t(u)] * w2[size_t((j * mlp + u) * d + q)];
          out[size_t(tok * d + q)] += p[size_t(tok * e + j)] * acc;
        }
      }
    }
  }
  return out;
}

double max_abs(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("experts choice: each expert takes its C best tokens of every group") {
  // 3 images of 5 tokens in groups of 2 images: a full group of 10 tokens and a last of 5.
  // Capacity factors below 1 (tokens left out), 1, and above (tokens taken several times).
  for (double capacity_factor : {0.5, 1.0, 2.5}) {
    CAPTURE(capacity_factor);
    SmallMoe m(experts_choice(4, capacity_factor, 2), 5, DType::f64);
    const Tensor x = randn({3, 5, 6}, RngKey{21, 1}, 0, DType::f64);
    std::vector<MoeReport> reports;
    ForwardContext ctx{Mode::eval, RngKey{1, 1}, 0};
    ctx.moe_reports = &reports;
    const FeedForwardOutput y = (*m.layer)(x, ctx, 0);
    CHECK_FALSE(y.aux_loss.defined());  // no auxiliary loss
    std::vector<int64_t> load;
    const std::vector<double> expected =
        reference(m, x.cpu().to_vector<double>(), 15, 6, 10, capacity_factor, &load);
    CHECK(max_abs(y.out.cpu().to_vector<double>(), expected) < 1e-12);
    const MoeStats stats = MoeStats::read(reports.at(0));
    CHECK(stats.expert_load == load);
    // Capacity per group: min(S, ceil(S c / E) rounded up to 4) for S = 10 and S = 5.
    const int64_t per_expert = std::min<int64_t>(10, expert_capacity(10, 1, capacity_factor, 4)) +
                               std::min<int64_t>(5, expert_capacity(5, 1, capacity_factor, 4));
    CHECK(load == std::vector<int64_t>(4, per_expert));
    CHECK(stats.importance_loss == 0);
  }
}

TEST_CASE("experts choice: equal weights go to the lower token, untaken tokens output zero") {
  // A zero router gives every token p = 1 / E for every expert: each expert takes the first C
  // tokens of each group, and the others get no expert at all.
  SmallMoe m(experts_choice(2, 0.5, 1), 12, DType::f64);
  Tensor router = m.store.value("moe/router/kernel");
  fill_(router, 0.0);
  const Tensor x = randn({2, 12, 6}, RngKey{22, 1}, 0, DType::f64);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::eval, RngKey{1, 1}, 0};
  ctx.moe_reports = &reports;
  ctx.record_routing = true;
  const Tensor out = (*m.layer)(x, ctx, 0).out;
  // C = ceil(12 * 0.5 / 2) = 3 -> 4 slots: tokens 0-3 of each image taken by both experts.
  const std::vector<double> o = out.cpu().to_vector<double>();
  for (int64_t img = 0; img < 2; ++img) {
    for (int64_t t = 0; t < 12; ++t) {
      double norm = 0;
      for (int64_t q = 0; q < 6; ++q)
        norm += std::abs(o[size_t((img * 12 + t) * 6 + q)]);
      CAPTURE(img, t);
      CHECK((t < 4 ? norm > 0 : norm == 0));
    }
  }
  const MoeStats stats = MoeStats::read(reports.at(0));
  CHECK(stats.dropped_fraction == Approx(16.0 / 24.0));
  CHECK(stats.expert_load == std::vector<int64_t>{8, 8});
  const RoutingRecord& r = reports.at(0).routing;
  REQUIRE(r.experts.shape() == Shape{24, 2});
  const std::vector<uint8_t> kept = r.kept.cpu().to_vector<uint8_t>();
  for (int64_t i = 0; i < 24; ++i) {
    CAPTURE(i);
    CHECK(kept[size_t(2 * i)] == uint8_t(i % 12 < 4));
    CHECK(kept[size_t(2 * i + 1)] == uint8_t(i % 12 < 4));
  }
  for (double w : r.weights.cpu().to_vector<float>())
    CHECK(w == 0.5f);
}

TEST_CASE("experts choice: test-time capacity changes the slots per expert") {
  SmallMoe m(experts_choice(4, 1.0, 1), 8, DType::f64);
  const Tensor x = randn({2, 8, 6}, RngKey{23, 1}, 0, DType::f64);
  for (double eval_capacity : {0.5, 1.0, 4.0}) {
    CAPTURE(eval_capacity);
    std::vector<MoeReport> reports;
    ForwardContext ctx{Mode::eval, RngKey{1, 1}, 0};
    ctx.moe_reports = &reports;
    ctx.eval_capacity_factor = eval_capacity;
    const Tensor out = (*m.layer)(x, ctx, 0).out;
    std::vector<int64_t> load;
    const std::vector<double> expected =
        reference(m, x.cpu().to_vector<double>(), 16, 6, 8, eval_capacity, &load);
    CHECK(max_abs(out.cpu().to_vector<double>(), expected) < 1e-12);
    // min(8, 4) per image for 0.5 and 1.0; every token by every expert for 4.0.
    const int64_t c = eval_capacity < 4 ? 4 : 8;
    CHECK(MoeStats::read(reports.at(0)).expert_load == std::vector<int64_t>(4, 2 * c));
  }
}

TEST_CASE("experts choice: finite-difference gradients through router and experts (f64)") {
  for (Mode mode : {Mode::eval, Mode::train}) {
    INFO("mode " << (mode == Mode::train ? "train" : "eval"));
    MoeConfig c = experts_choice(4, 1.5, 2);
    c.noise_std = 1.0;
    SmallMoe m(c, 5, DType::f64);
    const Tensor x = randn({4, 5, 6}, RngKey{24, 1}, 0, DType::f64);
    const Tensor r = randn({4, 5, 6}, RngKey{24, 2}, 0, DType::f64);
    CHECK(worst_gradient_error(m, x, r, ForwardContext{mode, RngKey{11, 0}, 0}) <= 1.0);
  }
}

TEST_CASE("experts choice: routing noise depends on the seed and not on the batch split") {
  MoeConfig c = experts_choice(4, 1.0, 1);
  c.noise_std = 4.0;
  SmallMoe m(c, 5, DType::f64);
  const Tensor x = randn({4, 5, 6}, RngKey{25, 1}, 0, DType::f64);
  const ForwardContext train{Mode::train, RngKey{7, 0}, 0};
  const std::vector<double> whole = (*m.layer)(x, train, 0).out.cpu().to_vector<double>();
  const ForwardContext second{Mode::train, RngKey{7, 0}, 2};
  const std::vector<double> part =
      (*m.layer)(x.slice(0, 2, 4).contiguous(), second, 0).out.cpu().to_vector<double>();
  CHECK(std::vector<double>(whole.begin() + 60, whole.end()) == part);
  const std::vector<double> other =
      (*m.layer)(x, ForwardContext{Mode::train, RngKey{8, 0}, 0}, 0).out.cpu().to_vector<double>();
  CHECK(other != whole);
}

TEST_CASE("experts choice: the layer's cost counts what a training forward keeps and its FLOPs") {
  // Whole size classes (8 images of 16 tokens, D 8, E 4, groups of 2 images: C = 8), so the
  // plan's figure and the allocator's bytes in use agree exactly, with and without noise.
  for (double noise : {0.0, 1.0}) {
    CAPTURE(noise);
    MoeConfig c = experts_choice(4, 1.0, 2);
    c.noise_std = noise;
    SmallMoe m(c, 16, DType::f32, 8, 8);
    Tensor x = randn({8, 16, 8}, RngKey{26, 1}, 0, DType::f32).set_requires_grad(true);
    const MeasuredForward real = measure_training_forward(m, x, {Mode::train, RngKey{11, 0}, 0});
    CostShape shape;
    shape.batch = 8;
    const LayerCost cost = m.layer->cost(shape, 16);
    CHECK(planned_kept_bytes(cost) == real.kept_bytes);
    CHECK(cost.forward_flops == real.forward_flops);
    CHECK(cost.backward_flops == real.backward_flops);
    CHECK(cost.active_flops == 2 * 128 * 8 * 4 + 4 * 4 * 32 * 8 * 8);
  }
}
