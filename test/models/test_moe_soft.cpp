// Soft MoE router (models/moe_soft.cpp): the layer against a plain-loop host computation of the
// formulation in configs/vmoe.proto, finite-difference gradients, per-image independence, the
// report and routing record, the cost's kept bytes and FLOPs against a real forward, and the
// config's handling of the router.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "configs/config.h"
#include "core/allocator.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "launch/experiment.h"
#include "models/moe_layer.h"
#include "test/models/small_moe.h"

using namespace vmoe;
using vmoe::testing::measure_training_forward;
using vmoe::testing::MeasuredForward;
using vmoe::testing::planned_kept_bytes;
using vmoe::testing::SmallMoe;
using vmoe::testing::worst_gradient_error;
using vmoe::testing::worst_relative_to_largest;

namespace {

MoeConfig soft_config(int64_t experts, int64_t slots, double noise_std) {
  MoeConfig c;
  c.router = MoeRouter::soft;
  c.num_experts = experts;
  c.slots_per_expert = slots;
  c.noise_std = noise_std;
  c.importance_loss_weight = c.load_loss_weight = 0;
  c.identical_expert_init = false;
  return c;
}

std::vector<double> host(const ParameterStore& store, const std::string& name) {
  return store.value(name).cpu().to_vector<double>();
}

double gelu_tanh(double v) {  // the library's GELU (tanh approximation)
  return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

// Soft MoE written out with loops, image by image, from the store's tensors.
struct SoftReference {
  std::vector<double> out;       // [B, T, D]
  std::vector<double> dispatch;  // [B, S, T]: softmax over tokens per slot
  std::vector<double> combine;   // [B, T, S]: softmax over slots per token
};

SoftReference soft_reference(const ParameterStore& store, const std::vector<double>& x,
                             const std::vector<double>& noise, int64_t b, int64_t t, int64_t d,
                             int64_t e, int64_t p, int64_t mlp) {
  const int64_t s = e * p;
  const std::vector<double> mu = host(store, "moe/router/mu");  // [D, E, P]
  const double scale = host(store, "moe/router/scale")[0];
  const std::vector<double> w1 = host(store, "moe/experts/fc1/kernel");  // [E, D, M]
  const std::vector<double> b1 = host(store, "moe/experts/fc1/bias");    // [E, M]
  const std::vector<double> w2 = host(store, "moe/experts/fc2/kernel");  // [E, M, D]
  const std::vector<double> b2 = host(store, "moe/experts/fc2/bias");    // [E, D]
  std::vector<double> mu_hat(size_t(d * s));
  for (int64_t j = 0; j < s; ++j) {
    double sq = 0;
    for (int64_t k = 0; k < d; ++k)
      sq += mu[size_t(k * s + j)] * mu[size_t(k * s + j)];
    for (int64_t k = 0; k < d; ++k)
      mu_hat[size_t(k * s + j)] = mu[size_t(k * s + j)] / std::sqrt(sq + 1e-6);
  }
  SoftReference r;
  r.out.assign(size_t(b * t * d), 0.0);
  r.dispatch.assign(size_t(b * s * t), 0.0);
  r.combine.assign(size_t(b * t * s), 0.0);
  for (int64_t img = 0; img < b; ++img) {
    auto xv = [&](int64_t i, int64_t k) { return x[size_t((img * t + i) * d + k)]; };
    std::vector<double> logits(size_t(t * s));
    for (int64_t i = 0; i < t; ++i) {
      double sq = 0;
      for (int64_t k = 0; k < d; ++k)
        sq += xv(i, k) * xv(i, k);
      const double inv = 1 / std::sqrt(sq + 1e-6);
      for (int64_t j = 0; j < s; ++j) {
        double dot = 0;
        for (int64_t k = 0; k < d; ++k)
          dot += xv(i, k) * inv * mu_hat[size_t(k * s + j)];
        logits[size_t(i * s + j)] =
            scale * dot + (noise.empty() ? 0.0 : noise[size_t((img * t + i) * s + j)]);
      }
    }
    auto dispatch = [&](int64_t j, int64_t i) -> double& {
      return r.dispatch[size_t((img * s + j) * t + i)];
    };
    auto combine = [&](int64_t i, int64_t j) -> double& {
      return r.combine[size_t((img * t + i) * s + j)];
    };
    for (int64_t j = 0; j < s; ++j) {  // over tokens
      double mx = -INFINITY, z = 0;
      for (int64_t i = 0; i < t; ++i)
        mx = std::max(mx, logits[size_t(i * s + j)]);
      for (int64_t i = 0; i < t; ++i)
        z += std::exp(logits[size_t(i * s + j)] - mx);
      for (int64_t i = 0; i < t; ++i)
        dispatch(j, i) = std::exp(logits[size_t(i * s + j)] - mx) / z;
    }
    for (int64_t i = 0; i < t; ++i) {  // over slots
      double mx = -INFINITY, z = 0;
      for (int64_t j = 0; j < s; ++j)
        mx = std::max(mx, logits[size_t(i * s + j)]);
      for (int64_t j = 0; j < s; ++j)
        z += std::exp(logits[size_t(i * s + j)] - mx);
      for (int64_t j = 0; j < s; ++j)
        combine(i, j) = std::exp(logits[size_t(i * s + j)] - mx) / z;
    }
    for (int64_t j = 0; j < s; ++j) {
      const int64_t ex = j / p;
      std::vector<double> in(size_t(d), 0.0), h(size_t(mlp), 0.0), y(size_t(d), 0.0);
      for (int64_t i = 0; i < t; ++i)
        for (int64_t k = 0; k < d; ++k)
          in[size_t(k)] += dispatch(j, i) * xv(i, k);
      for (int64_t m = 0; m < mlp; ++m) {
        double acc = b1[size_t(ex * mlp + m)];
        for (int64_t k = 0; k < d; ++k)
          acc += in[size_t(k)] * w1[size_t((ex * d + k) * mlp + m)];
        h[size_t(m)] = gelu_tanh(acc);
      }
      for (int64_t k = 0; k < d; ++k) {
        double acc = b2[size_t(ex * d + k)];
        for (int64_t m = 0; m < mlp; ++m)
          acc += h[size_t(m)] * w2[size_t((ex * mlp + m) * d + k)];
        y[size_t(k)] = acc;
      }
      for (int64_t i = 0; i < t; ++i)
        for (int64_t k = 0; k < d; ++k)
          r.out[size_t((img * t + i) * d + k)] += combine(i, j) * y[size_t(k)];
    }
  }
  return r;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("soft moe: the layer equals a plain-loop computation of the formulation", "[soft]") {
  // (images, slots per expert): 15 tokens >= 6 slots scales mu, 2 tokens < 8 slots the tokens.
  for (const auto& [images, tokens, slots] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{3, 5, 2}, {1, 2, 3}}) {
    for (bool noisy : {false, true}) {
      CAPTURE(images, tokens, slots, noisy);
      const int64_t e = 3, d = 6, mlp = 5;
      SmallMoe m(soft_config(e, slots, noisy ? 0.7 : 0.0), tokens, DType::f64, d, mlp);
      const Tensor x = randn({images, tokens, d}, RngKey{5, 1}, 0, DType::f64);
      const int64_t first = 7, s = e * slots;
      const ForwardContext ctx{noisy ? Mode::train : Mode::eval, RngKey{11, 0}, first};
      std::vector<double> noise;
      if (noisy) {
        // The noise the formulation specifies: std noise_std, keyed by global token and slot.
        noise = (randn({images * tokens, s}, derive(RngKey{11, 0}, "router_noise", 0),
                       uint64_t(first * tokens * s), DType::f64) *
                 0.7)
                    .cpu()
                    .to_vector<double>();
      }
      const SoftReference ref = soft_reference(m.store, x.cpu().to_vector<double>(), noise, images,
                                               tokens, d, e, slots, mlp);
      const FeedForwardOutput y = (*m.layer)(x, ctx, 0);
      CHECK(y.out.shape() == Shape{images, tokens, d});
      CHECK(max_abs_diff(y.out.cpu().to_vector<double>(), ref.out) < 1e-12);
      CHECK_FALSE(y.aux_loss.defined());  // no auxiliary loss
    }
  }
}

TEST_CASE("soft moe: finite-difference gradients of the whole layer (f64)", "[soft]") {
  for (const auto& [images, slots] : std::vector<std::pair<int64_t, int64_t>>{{3, 2}, {1, 4}}) {
    for (Mode mode : {Mode::eval, Mode::train}) {
      CAPTURE(images, slots, mode == Mode::train);
      SmallMoe m(soft_config(3, slots, 0.5), 4, DType::f64);
      const Tensor x = randn({images, 4, 6}, RngKey{5, 1}, 0, DType::f64);
      const Tensor r = randn({images, 4, 6}, RngKey{5, 2}, 0, DType::f64);
      CHECK(worst_gradient_error(m, x, r, ForwardContext{mode, RngKey{11, 0}, 3}) <= 1.0);
    }
  }
}

TEST_CASE("soft moe: each image's output does not depend on the other images", "[soft]") {
  SmallMoe m(soft_config(3, 2, 0.5), 5, DType::f64);
  const Tensor x = randn({3, 5, 6}, RngKey{8, 1}, 0, DType::f64);
  for (Mode mode : {Mode::eval, Mode::train}) {
    CAPTURE(mode == Mode::train);
    const int64_t first = 10;
    const std::vector<double> all =
        (*m.layer)(x, ForwardContext{mode, RngKey{4, 0}, first}, 0).out.cpu().to_vector<double>();
    std::vector<double> alone;
    for (int64_t i = 0; i < 3; ++i) {
      const ForwardContext ctx{mode, RngKey{4, 0}, first + i};  // the image's global index
      const std::vector<double> o =
          (*m.layer)(x.slice(0, i, i + 1).contiguous(), ctx, 0).out.cpu().to_vector<double>();
      alone.insert(alone.end(), o.begin(), o.end());
    }
    CHECK(max_abs_diff(all, alone) < 1e-13);
  }
  // The noise is on in training: the two modes differ.
  CHECK(max_abs_diff((*m.layer)(x, ForwardContext{Mode::eval, RngKey{4, 0}, 0}, 0)
                         .out.cpu()
                         .to_vector<double>(),
                     (*m.layer)(x, ForwardContext{Mode::train, RngKey{4, 0}, 0}, 0)
                         .out.cpu()
                         .to_vector<double>()) > 1e-6);
}

TEST_CASE("soft moe: the report and routing record", "[soft]") {
  const int64_t b = 2, t = 5, d = 6, mlp = 5, e = 3, p = 2, s = e * p, n = b * t;
  SmallMoe m(soft_config(e, p, 0.0), t, DType::f64, d, mlp);
  // Large logits, so that the dispatch weights' argmaxes are distinct and routing is peaked.
  Tensor scale = m.store.value("moe/router/scale").detach();
  fill_(scale, 8.0);
  const Tensor x = randn({b, t, d}, RngKey{6, 1}, 0, DType::f64);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::eval, RngKey{}, 0};
  ctx.moe_reports = &reports;
  ctx.record_routing = true;
  int64_t measured_flops = 0;
  {
    FlopCount flops;
    (void)(*m.layer)(x, ctx, 3);
    measured_flops = flops.flops();
  }
  REQUIRE(reports.size() == 1);
  const MoeReport& report = reports[0];
  CHECK(report.block == 3);
  CHECK_FALSE(report.aux_loss.defined());
  const MoeStats stats = MoeStats::read(report);
  CHECK(stats.importance_loss == 0);
  CHECK(stats.load_loss == 0);
  CHECK(stats.gshard_loss == 0);
  CHECK(stats.dropped_fraction == 0);
  CHECK(stats.expert_load == std::vector<int64_t>(size_t(e), b * p));
  // Router, dispatch and combine GEMMs (2 N S D each) and the experts: what the forward ran.
  CHECK(report.flops == double(6 * n * s * d + 4 * s * b * d * mlp));
  CHECK(report.flops == double(measured_flops));

  const SoftReference ref =
      soft_reference(m.store, x.cpu().to_vector<double>(), {}, b, t, d, e, p, mlp);
  const RoutingRecord& r = report.routing;
  REQUIRE(r.experts.shape() == Shape{n, e});
  CHECK(r.weights.dtype() == DType::f32);
  const std::vector<int64_t> experts = r.experts.cpu().to_vector<int64_t>();
  const std::vector<float> weights = r.weights.cpu().to_vector<float>();
  const std::vector<uint8_t> kept = r.kept.cpu().to_vector<uint8_t>();
  // The reference's argmax token of every slot.
  std::vector<std::vector<bool>> is_argmax(size_t(n), std::vector<bool>(size_t(e), false));
  for (int64_t img = 0; img < b; ++img) {
    for (int64_t j = 0; j < s; ++j) {
      int64_t best = 0;
      for (int64_t i = 1; i < t; ++i)
        if (ref.dispatch[size_t((img * s + j) * t + i)] >
            ref.dispatch[size_t((img * s + j) * t + best)])
          best = i;
      is_argmax[size_t(img * t + best)][size_t(j / p)] = true;
    }
  }
  int64_t kept_count = 0;
  for (int64_t tok = 0; tok < n; ++tok) {
    CAPTURE(tok);
    std::vector<bool> seen(size_t(e), false);
    double total = 0;
    for (int64_t j = 0; j < e; ++j) {
      const int64_t ex = experts[size_t(tok * e + j)];
      REQUIRE((ex >= 0 && ex < e && !seen[size_t(ex)]));
      seen[size_t(ex)] = true;
      double w = 0;  // the token's combine weight over the expert's slots
      for (int64_t q = 0; q < p; ++q)
        w += ref.combine[size_t(tok * s + ex * p + q)];
      CHECK(double(weights[size_t(tok * e + j)]) == Approx(w).epsilon(1e-6));
      if (j > 0) CHECK(weights[size_t(tok * e + j)] <= weights[size_t(tok * e + j - 1)]);
      CHECK(bool(kept[size_t(tok * e + j)]) == is_argmax[size_t(tok)][size_t(ex)]);
      kept_count += kept[size_t(tok * e + j)];
      total += w;
    }
    CHECK(total == Approx(1.0));
  }
  // Every slot has one argmax token; a (token, expert) pair may hold several of its slots.
  CHECK(kept_count >= 1);
  CHECK(kept_count <= b * s);
}

TEST_CASE("soft moe: the cost counts the forward's kept bytes and GEMM FLOPs exactly", "[soft]") {
  // A training forward (tape on, input requiring grad, a report sink as the ViT attaches)
  // against MoeLayer::cost, small tensors at the allocator's smallest block. Sizes are whole
  // size classes: E = 4, D = M = 8, 16 tokens per image.
  struct Case {
    int64_t batch, slots;
    double noise;
    Precision precision;
  };
  for (const Case& c : std::vector<Case>{{2, 4, 0.0, Precision::f32},
                                         {2, 4, 1.0, Precision::f32},
                                         {1, 8, 0.5, Precision::f32},  // the tokens are scaled
                                         {4, 4, 1.0, Precision::bf16}}) {
    CAPTURE(c.batch, c.slots, c.noise, c.precision == Precision::bf16);
    SmallMoe m(soft_config(4, c.slots, c.noise), 16, DType::f32, 8, 8);
    const DType a = activation_dtype(c.precision, DType::f32);
    const Tensor x =
        to_dtype(randn({c.batch, 16, 8}, RngKey{5, 1}, 0, DType::f32), a).set_requires_grad(true);
    ForwardContext ctx{Mode::train, RngKey{11, 0}, 0};
    ctx.precision = c.precision;
    const MeasuredForward real = measure_training_forward(m, x, ctx);
    CHECK(real.out_dtype == a);
    CostShape shape;
    shape.batch = c.batch;
    shape.activation = a;
    const LayerCost cost = m.layer->cost(shape, 16);
    CHECK(planned_kept_bytes(cost) == real.kept_bytes);
    CHECK(cost.forward_flops == real.forward_flops);
    CHECK(cost.backward_flops == real.backward_flops);
    CHECK(double(cost.forward_flops) == real.report_flops);
  }
}

TEST_CASE("soft moe: a BF16 forward keeps the router in f32 and is close to F32", "[soft]") {
  SmallMoe m(soft_config(3, 2, 0.0), 5, DType::f32);
  const Tensor x = randn({2, 5, 6}, RngKey{3, 1}, 0, DType::f32);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::eval, RngKey{}, 0};
  ctx.moe_reports = &reports;
  ctx.record_routing = true;
  const std::vector<float> full = (*m.layer)(x, ctx, 0).out.cpu().to_vector<float>();
  ctx.precision = Precision::bf16;
  const Tensor mixed = (*m.layer)(to_dtype(x, DType::bf16), ctx, 0).out;
  CHECK(mixed.dtype() == DType::bf16);
  const std::vector<float> half = to_dtype(mixed, DType::f32).cpu().to_vector<float>();
  CHECK(worst_relative_to_largest(full, half) <= 0.03);
  // The routing weights come from the f32 router, close to the F32 run's.
  const std::vector<float> w32 = reports.at(0).routing.weights.cpu().to_vector<float>();
  const std::vector<float> w16 = reports.at(1).routing.weights.cpu().to_vector<float>();
  for (size_t i = 0; i < w32.size(); ++i)
    CHECK(std::abs(w32[i] - w16[i]) < 0.02);
}

TEST_CASE("soft moe: the config's fields for router SOFT", "[soft]") {
  auto error_of = [](const std::vector<std::string>& overrides) -> std::string {
    try {
      parse_config_text("", "test", overrides);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "";
  };
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"k", "2"}, {"importance_loss_weight", "0.01"}, {"gshard_loss_weight", "0.1"}}) {
    const std::string error =
        error_of({"model.moe.router=SOFT", "model.moe." + field + "=" + value});
    CHECK(error.rfind("model.moe." + field + " does not apply to router SOFT", 0) == 0);
    CHECK(error.find('\n') == std::string::npos);
  }
  // Noise is off unless set; slots per expert pass through; the default is round(T c / E).
  const config::Config cfg =
      parse_config_text("", "test", {"model.moe.router=SOFT", "model.moe.slots_per_expert=3"});
  const MoeConfig soft = moe_config_from(cfg.model().moe(), cfg.model().num_layers());
  CHECK(soft.router == MoeRouter::soft);
  CHECK(soft.noise_std == 0);
  CHECK(soft.slots_per_expert == 3);
  CHECK(soft_slots_per_expert(soft, 17) == 3);
  const config::Config noisy =
      parse_config_text("", "test", {"model.moe.router=SOFT", "model.moe.noise_std=0.5"});
  const MoeConfig with_noise = moe_config_from(noisy.model().moe(), noisy.model().num_layers());
  CHECK(with_noise.noise_std == 0.5);
  MoeConfig by_capacity = with_noise;
  by_capacity.num_experts = 8;
  by_capacity.capacity_factor = 1.0;
  CHECK(soft_slots_per_expert(by_capacity, 65) == 8);  // round(65 / 8)
}
