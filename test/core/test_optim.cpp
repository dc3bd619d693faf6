// Optimizer, schedule, gradient-norm clipping and ParameterStore tests against closed forms.
#include <catch2/catch.hpp>
#include <cmath>
#include <numbers>

#include "core/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"
#include "core/optim/schedule.h"
#include "core/optim/sgd.h"
#include "core/parameters.h"

using namespace vmoe;

namespace {

// A store with one decayed kernel [2] and one bias [1] (no decay), f64.
ParameterStore small_store() {
  ParameterStore s;
  s.declare("layer/kernel", {2}, InitSpec::constant(1.0), WeightDecay::yes);
  s.declare("layer/bias", {1}, InitSpec::constant(-2.0));
  s.allocate(0, DType::f64);
  return s;
}

void set_grads(ParameterStore& s, std::vector<double> kernel, std::vector<double> bias) {
  Tensor k = s.grad("layer/kernel"), b = s.grad("layer/bias");
  copy_(k, Tensor::from_vector(kernel, {2}));
  copy_(b, Tensor::from_vector(bias, {1}));
}

}  // namespace

TEST_CASE("optim: AdamW matches the closed form with decoupled, lr-scaled weight decay") {
  ParameterStore s = small_store();
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt(s, o);
  const double lr = 0.01;
  double w = 1.0, bias = -2.0, m = 0, v = 0, mb = 0, vb = 0;
  const std::vector<double> gk = {0.5, 0.5}, gb = {-0.25};
  for (int t = 1; t <= 3; ++t) {
    set_grads(s, gk, gb);
    opt.step(s, lr);
    // Reference: update = -lr * (m_hat / (sqrt(v_hat) + eps) + wd * w), decay on kernels only.
    m = 0.9 * m + 0.1 * gk[0];
    v = 0.999 * v + 0.001 * gk[0] * gk[0];
    const double mh = m / (1 - std::pow(0.9, t)), vh = v / (1 - std::pow(0.999, t));
    w -= lr * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * w);
    mb = 0.9 * mb + 0.1 * gb[0];
    vb = 0.999 * vb + 0.001 * gb[0] * gb[0];
    const double mbh = mb / (1 - std::pow(0.9, t)), vbh = vb / (1 - std::pow(0.999, t));
    bias -= lr * (mbh / (std::sqrt(vbh) + 1e-8));
  }
  auto k = s.value("layer/kernel").cpu().to_vector<double>();
  CHECK(k[0] == Approx(w).epsilon(1e-12));
  CHECK(k[1] == Approx(w).epsilon(1e-12));
  CHECK(s.value("layer/bias").cpu().to_vector<double>()[0] == Approx(bias).epsilon(1e-12));
  CHECK(opt.steps() == 3);
}

TEST_CASE("optim: AdamW decays every parameter when decay_masked_only is off") {
  ParameterStore s = small_store();
  AdamWOptions o;
  o.weight_decay = 0.5;
  o.decay_masked_only = false;
  AdamW opt(s, o);
  set_grads(s, {0, 0}, {0});
  opt.step(s, 0.1);
  // Zero gradient: only the decay acts, w <- w - lr * wd * w.
  CHECK(s.value("layer/bias").cpu().to_vector<double>()[0] == Approx(-2.0 * (1 - 0.05)));
  CHECK(s.value("layer/kernel").cpu().to_vector<double>()[0] == Approx(1.0 * (1 - 0.05)));
}

TEST_CASE("optim: SGD momentum and Nesterov follow optax semantics") {
  for (bool nesterov : {false, true}) {
    ParameterStore s = small_store();
    SgdOptions o;
    o.momentum = 0.9;
    o.nesterov = nesterov;
    Sgd opt(s, o);
    double w = -2.0, trace = 0;
    for (int t = 0; t < 3; ++t) {
      set_grads(s, {0, 0}, {1.0 + t});
      opt.step(s, 0.1);
      const double g = 1.0 + t;
      trace = g + 0.9 * trace;
      w -= 0.1 * (nesterov ? g + 0.9 * trace : trace);
    }
    CHECK(s.value("layer/bias").cpu().to_vector<double>()[0] == Approx(w).epsilon(1e-12));
  }
}

TEST_CASE("optim: schedules warm up linearly and decay to the end value") {
  LrSchedule lin{LrSchedule::Kind::warmup_linear_decay, 1.0, 0.1, 10, 110};
  CHECK(lin.at(0) == Approx(0.1));
  CHECK(lin.at(9) == Approx(1.0));
  CHECK(lin.at(10) == Approx(1.0));
  CHECK(lin.at(60) == Approx(0.55));
  CHECK(lin.at(110) == Approx(0.1));
  CHECK(lin.at(500) == Approx(0.1));
  LrSchedule cos{LrSchedule::Kind::warmup_cosine_decay, 1.0, 0.0, 0, 100};
  CHECK(cos.at(0) == Approx(1.0));
  CHECK(cos.at(50) == Approx(0.5));
  CHECK(cos.at(25) == Approx(0.5 * (1 + std::cos(std::numbers::pi / 4))));
  CHECK(cos.at(100) == Approx(0.0).margin(1e-12));
  LrSchedule constant{LrSchedule::Kind::constant, 0.3};
  CHECK(constant.at(12345) == 0.3);
}

TEST_CASE("optim: gradient norms are computed on the store's device") {
  ParameterStore s = small_store();
  set_grads(s, {3, 0}, {4});
  Tensor sq = grad_norm_squared(s);
  CHECK(sq.shape() == Shape{});
  CHECK(sq.dtype() == DType::f64);
  CHECK(sq.device() == s.device());
  CHECK(sq.cpu().item() == 25.0);
  CHECK(grad_norm_squared(s, Sharding::replicated).cpu().item() == 25.0);
  CHECK(grad_norm_squared(s, Sharding::expert).cpu().item() == 0.0);
  CHECK(global_grad_norm(s) == 5.0);
}

TEST_CASE("optim: clipping inside the update equals the update of pre-scaled gradients") {
  // Gradients (3, 0 | 4) have the global norm 5; clipping to 1 scales them by 1/5.
  const std::vector<double> gk = {3, 0}, gb = {4};
  const double factor = 1.0 / 5.0;
  auto run = [&](auto make_optimizer, const std::vector<double>& kernel,
                 const std::vector<double>& bias, double max_norm) {
    ParameterStore s = small_store();
    auto opt = make_optimizer(s);
    for (int step = 0; step < 2; ++step) {
      set_grads(s, kernel, bias);
      opt.step(s, 0.1, GradClip{grad_norm_squared(s), max_norm});
    }
    // The update leaves the gradients as they are.
    CHECK(s.flat_grads(Sharding::replicated).cpu().to_vector<double>() ==
          std::vector<double>{kernel[0], kernel[1], bias[0]});
    return s.flat_values(Sharding::replicated).cpu().to_vector<double>();
  };
  auto adamw = [](const ParameterStore& s) {
    AdamWOptions o;
    o.weight_decay = 0.1;
    return AdamW(s, o);
  };
  auto sgd = [](const ParameterStore& s) {
    SgdOptions o;
    o.nesterov = true;
    o.weight_decay = 0.1;
    return Sgd(s, o);
  };
  auto check_both = [&](auto make_optimizer) {
    const std::vector<double> clipped = run(make_optimizer, gk, gb, 1.0);
    const std::vector<double> prescaled =
        run(make_optimizer, {gk[0] * factor, gk[1] * factor}, {gb[0] * factor}, 0.0);
    const std::vector<double> unclipped = run(make_optimizer, gk, gb, 0.0);
    REQUIRE(clipped.size() == 3);
    for (size_t i = 0; i < clipped.size(); ++i) {
      CAPTURE(i);
      CHECK(clipped[i] == Approx(prescaled[i]).epsilon(1e-14));
    }
    CHECK(clipped != unclipped);
    // At or below the limit nothing is scaled: bit-identical to the unclipped update.
    CHECK(run(make_optimizer, gk, gb, 5.0) == unclipped);
    CHECK(run(make_optimizer, gk, gb, 10.0) == unclipped);
    // An undefined norm is no clipping either.
    ParameterStore s = small_store();
    auto opt = make_optimizer(s);
    for (int step = 0; step < 2; ++step) {
      set_grads(s, gk, gb);
      opt.step(s, 0.1, GradClip{Tensor(), 1.0});
    }
    CHECK(s.flat_values(Sharding::replicated).cpu().to_vector<double>() == unclipped);
  };
  SECTION("AdamW") {
    check_both(adamw);
  }
  SECTION("SGD") {
    check_both(sgd);
  }
}

TEST_CASE("parameters: flat buffers, views, decay mask and backward into the flat gradient") {
  ParameterStore s;
  s.declare("a/kernel", {2, 3}, InitSpec::constant(2.0), WeightDecay::yes);
  s.declare("a/bias", {3}, InitSpec::zeros());
  s.allocate(0);
  CHECK(s.num_elements() == 9);
  CHECK(s.flat_values(Sharding::replicated).numel() == 9);
  CHECK(s.flat_values(Sharding::expert).numel() == 0);
  CHECK(s.flat_decay_mask(Sharding::replicated).dtype() == DType::u8);
  auto mask = s.flat_decay_mask(Sharding::replicated).cpu().to_vector<uint8_t>();
  CHECK(std::count(mask.begin(), mask.end(), uint8_t(1)) == 6);
  CHECK(std::count(mask.begin(), mask.end(), uint8_t(0)) == 3);
  // Writing the flat buffer shows through the named view.
  Tensor flat = s.flat_values(Sharding::replicated);
  fill_(flat, 1.5);
  CHECK(s.value("a/bias").cpu().to_vector<float>()[2] == 1.5f);
  // Backward accumulates into the flat gradient buffer in place.
  Tensor x = Tensor::full({4, 2}, 1.0);
  sum_all(linear(x, s.value("a/kernel"), s.value("a/bias"))).backward();
  auto g = s.flat_grads(Sharding::replicated).cpu().to_vector<float>();
  for (int i = 0; i < 6; ++i)
    CHECK(g[size_t(i)] == 4.0f);  // d/dW = sum over 4 rows of x
  for (int i = 6; i < 9; ++i)
    CHECK(g[size_t(i)] == 4.0f);  // d/db = 4 rows
  s.zero_grads();
  CHECK(sum_squares(s.flat_grads(Sharding::replicated)).cpu().item() == 0.0);
}

TEST_CASE("parameters: duplicate names and late declarations are errors") {
  ParameterStore s;
  s.declare("x", {1}, InitSpec::zeros());
  REQUIRE_THROWS_WITH(s.declare("x", {1}, InitSpec::zeros()),
                      Catch::Contains("duplicate parameter name 'x'"));
  s.allocate(0);
  REQUIRE_THROWS_WITH(s.declare("y", {1}, InitSpec::zeros()), Catch::Contains("after allocate"));
  REQUIRE_THROWS_WITH(s.value("nope"), Catch::Contains("no parameter named 'nope'"));
}

TEST_CASE("parameters: lecun_normal and xavier_uniform have the right spread") {
  Tensor t = Tensor::empty({200, 100}, DType::f64);
  initialize(t, InitSpec::lecun_normal(100), RngKey{1, 2});
  auto v = t.cpu().to_vector<double>();
  double ss = 0, maxabs = 0;
  for (double x : v) {
    ss += x * x;
    maxabs = std::max(maxabs, std::abs(x));
  }
  CHECK(std::sqrt(ss / double(v.size())) == Approx(0.1).epsilon(0.03));  // std = 1/sqrt(fan_in)
  CHECK(maxabs < 2 * 0.1 / 0.87962566103423978 + 1e-12);                 // truncated at 2 sigma
  initialize(t, InitSpec::xavier_uniform(100, 200), RngKey{1, 3});
  v = t.cpu().to_vector<double>();
  const double limit = std::sqrt(6.0 / 300.0);
  double m = 0;
  for (double x : v)
    m = std::max(m, std::abs(x));
  CHECK(m <= limit);
  CHECK(m > 0.99 * limit);
}

TEST_CASE("parameters: an expert shard holds exactly its experts' slice of the full values") {
  auto declare = [](ParameterStore& s) {
    s.declare("router", {3, 4}, InitSpec::normal(1.0));
    s.declare("experts/kernel", {4, 3, 2}, InitSpec::xavier_uniform(3, 2), WeightDecay::yes,
              Sharding::expert);
    s.declare("experts/bias", {4, 2}, InitSpec::normal(0.5), WeightDecay::no, Sharding::expert);
  };
  ParameterStore full, shard;
  declare(full);
  declare(shard);
  full.allocate(7, DType::f64);
  shard.set_expert_shard({4, 2, 2});  // experts 2 and 3
  shard.allocate(7, DType::f64);
  CHECK(shard.num_elements() == full.num_elements());  // global count
  CHECK(shard.flat_values(Sharding::expert).numel() == 2 * 3 * 2 + 2 * 2);
  CHECK(shard.value("router").cpu().to_vector<double>() ==
        full.value("router").cpu().to_vector<double>());
  for (const char* name : {"experts/kernel", "experts/bias"}) {
    CAPTURE(name);
    CHECK(shard.value(name).shape()[0] == 2);
    CHECK(shard.value(name).cpu().to_vector<double>() ==
          full.value(name).slice(0, 2, 4).contiguous().cpu().to_vector<double>());
  }
  // Experts differ from each other (independent draws per expert).
  CHECK(full.value("experts/bias").slice(0, 0, 1).contiguous().cpu().to_vector<double>() !=
        full.value("experts/bias").slice(0, 1, 2).contiguous().cpu().to_vector<double>());
  ParameterStore bad;
  bad.declare("experts/kernel", {3, 2}, InitSpec::zeros(), WeightDecay::no, Sharding::expert);
  bad.set_expert_shard({4, 0, 2});
  REQUIRE_THROWS_WITH(bad.allocate(0), Catch::Contains("expected a leading axis of 4 experts"));
  REQUIRE_THROWS_WITH(ParameterStore().set_expert_shard({4, 3, 2}),
                      Catch::Contains("not within 4 experts"));
}
