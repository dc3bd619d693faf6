// V-MoE layer tests: capacity, slot assignment (k-major, vanilla vs BPR, drops), auxiliary
// losses against hand-computed values and their batched forms against the per-group ones, the
// layer's cost of them, finite-difference gradients through the whole layer, the E = 1 dense
// limit, determinism and batch-split independence of the routing noise.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/grad_clip.h"
#include "core/transfer_counts.h"
#include "launch/experiment.h"
#include "models/mlp_block.h"
#include "models/moe_layer.h"
#include "models/moe_losses.h"
#include "models/routing.h"
#include "models/vision_transformer.h"
#include "test/models/small_moe.h"

using namespace vmoe;
using vmoe::testing::moe_loss;
using vmoe::testing::set_element;
using vmoe::testing::SmallMoe;
using vmoe::testing::worst_gradient_error;

namespace {

// The slot assignment of the device ops (priority_order + assign_slots) read back to the host.
struct Plan {
  int64_t rows_per_expert = 0, dropped = 0;
  std::vector<int64_t> capacity;  // [G]
  std::vector<int64_t> dispatch_rows, combine_rows, expert_load;
};

Plan route(const std::vector<int64_t>& experts, const std::vector<double>& priority, int64_t n,
           int64_t k, int64_t e, int64_t group_size, double capacity_factor, TokenOrder order) {
  const SlotLayout layout = routing_layout(n, k, e, group_size, capacity_factor);
  const Tensor by_priority = order == TokenOrder::batch_priority
                                 ? priority_order(Tensor::from_vector(priority, {n}), layout)
                                 : Tensor();
  const SlotAssignment slots =
      assign_slots(Tensor::from_vector(experts, {n, k}), by_priority, layout);
  Plan p;
  p.rows_per_expert = layout.rows_per_expert;
  for (int64_t g = 0; g < layout.groups(); ++g)
    p.capacity.push_back(g + 1 == layout.groups() ? layout.last_capacity : layout.capacity);
  p.dispatch_rows = slots.dispatch_rows.cpu().to_vector<int64_t>();
  p.combine_rows = slots.combine_rows.cpu().to_vector<int64_t>();
  p.expert_load = slots.expert_load.cpu().to_vector<int64_t>();
  for (int64_t row : p.combine_rows)
    p.dropped += row < 0;
  return p;
}

double dropped_fraction(const MoeReport& report) {
  return MoeStats::read(report).dropped_fraction;
}

}  // namespace

TEST_CASE("moe: capacity is ceil(S k c / E) rounded up to a multiple of 4") {
  CHECK(expert_capacity(400, 2, 1.05, 8) == 108);  // 105 -> 108
  CHECK(expert_capacity(10, 1, 1.0, 4) == 4);      // 2.5 -> 3 -> 4
  CHECK(expert_capacity(16, 1, 1.0, 2) == 8);      // exact multiple stays
  CHECK(expert_capacity(64, 2, 0.5, 8) == 8);      // 8
  CHECK(expert_capacity(8, 1, 0.5, 4) == 4);       // 1 -> 4
  // Exact products stay exact: 400-token groups, E 8, k 2 -> S k c / E = 100 c.
  CHECK(expert_capacity(400, 2, 0.2, 8) == 20);
  CHECK(expert_capacity(400, 2, 0.4, 8) == 40);
  CHECK(expert_capacity(400, 2, 0.6, 8) == 60);
  CHECK(expert_capacity(400, 2, 1.2, 8) == 120);
}

TEST_CASE("moe: capacity below one slot is 4 as in the reference, only bad factors are errors") {
  // A small last group at low test-time capacity, or many experts: S k c / E < 1 -> C = 4.
  CHECK(expert_capacity(3, 1, 1.0, 8) == 4);      // 0.375
  CHECK(expert_capacity(1, 1, 0.01, 64) == 4);    // 0.00016
  CHECK(expert_capacity(400, 2, 0.001, 8) == 4);  // 0.1
  CHECK(expert_capacity(0, 2, 1.0, 8) == 4);      // an empty group still gets the minimum
  for (double c :
       {0.0, -1.0, std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    INFO(c);
    CHECK_THROWS_WITH(expert_capacity(400, 2, c, 8),
                      Catch::Contains("capacity factor must be finite and > 0"));
  }
  // Sizes too large for 64 bits are reported, not wrapped.
  CHECK_THROWS_AS(expert_capacity(int64_t(1) << 62, 4, 1.0, 1), SizeOverflow);
  CHECK_THROWS_AS(expert_capacity(int64_t(1) << 50, 2, 65536.0, 1), SizeOverflow);
  // The routing layout of a batch whose last group is small gets the minimum there.
  const SlotLayout layout = routing_layout(8 * 50 + 3, 2, 8, 400, 0.4);
  CHECK(layout.capacity == 40);
  CHECK(layout.last_capacity == 4);
  CHECK(layout.rows_per_expert == 44);
}

TEST_CASE("moe: capacities from a config are computed from the factor as written") {
  // 0.4 stored as a 32-bit float widened to 0.4000000059604645 and gave 44 slots, not 40.
  const config::Config cfg = config::parse_config_text(
      "model { moe { num_experts: 8 k: 2 capacity_factor: 0.4 eval_capacity_factor: 0.6 } }",
      "test");
  const MoeConfig m = moe_config_from(cfg.model().moe(), cfg.model().num_layers());
  CHECK(expert_capacity(400, m.k, m.capacity_factor, m.num_experts) == 40);
  CHECK(expert_capacity(400, m.k, m.eval_capacity_factor, m.num_experts) == 60);
  for (const char* c : {"0.2", "1.2"}) {
    INFO(c);
    const config::Config one =
        config::parse_config_text("", "test", {"model.moe.capacity_factor=" + std::string(c)});
    const MoeConfig mc = moe_config_from(one.model().moe(), one.model().num_layers());
    CHECK(expert_capacity(400, 2, mc.capacity_factor, 8) == int64_t(std::stod(c) * 100 + 0.5));
    CHECK(expert_capacity(400, 2, mc.eval_capacity_factor, 8) == int64_t(std::stod(c) * 100 + 0.5));
  }
}

TEST_CASE("moe: sizes of a model config are computed with checked multiplication") {
  VitConfig v;
  v.image_size = int64_t(1) << 40;
  v.patch_size = 1;
  CHECK_THROWS_AS(v.num_patches(), SizeOverflow);
  CHECK_THROWS_AS(validate(v), SizeOverflow);
  VitConfig g;
  MoeConfig c;
  c.images_per_group = int64_t(1) << 60;
  c.moe_blocks = {1};
  g.moe = c;
  CHECK_THROWS_AS(validate(g), SizeOverflow);
}

TEST_CASE("moe: placements every-n and last-n follow the paper") {
  CHECK(every_n_blocks(8, 2) == std::vector<int64_t>{1, 3, 5, 7});
  CHECK(every_n_blocks(12, 3) == std::vector<int64_t>{2, 5, 8, 11});
  CHECK(last_n_blocks(32, 5) == std::vector<int64_t>{23, 25, 27, 29, 31});
  CHECK(last_n_blocks(24, 2) == std::vector<int64_t>{21, 23});
  MoeConfig m;
  m.moe_blocks = {1, 9};
  REQUIRE_THROWS_WITH(validate(m, 8), Catch::Contains("block 9 outside"));
  m.moe_blocks = {1};
  m.k = 9;
  REQUIRE_THROWS_WITH(validate(m, 8), Catch::Contains("model.moe.k must be in [1, num_experts"));
}

TEST_CASE("moe: vanilla routing fills experts in token order and drops the overflow") {
  // 8 tokens, E = 2, k = 1, capacity 4: all choose expert 0.
  std::vector<int64_t> experts(8, 0);
  std::vector<double> priority{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  Plan p = route(experts, priority, 8, 1, 2, 8, 1.0, TokenOrder::vanilla);
  REQUIRE(p.rows_per_expert == 4);
  CHECK(p.dispatch_rows == std::vector<int64_t>{0, 1, 2, 3, -1, -1, -1, -1});
  CHECK(p.combine_rows == std::vector<int64_t>{0, 1, 2, 3, -1, -1, -1, -1});
  CHECK(p.dropped == 4);
  CHECK(p.expert_load == std::vector<int64_t>{4, 0});
}

TEST_CASE("moe: BPR takes tokens by descending priority, ties in token order") {
  std::vector<int64_t> experts(8, 0);
  std::vector<double> priority{0.1, 0.9, 0.3, 0.9, 0.5, 0.2, 0.7, 0.8};
  Plan p = route(experts, priority, 8, 1, 2, 8, 1.0, TokenOrder::batch_priority);
  // Order: 1 (0.9), 3 (0.9, later), 7 (0.8), 6 (0.7) fill the 4 slots.
  CHECK(p.dispatch_rows == std::vector<int64_t>{1, 3, 7, 6, -1, -1, -1, -1});
  CHECK(p.combine_rows == std::vector<int64_t>{-1, 0, -1, 1, -1, -1, 3, 2});
}

TEST_CASE("moe: assignment is k-major: all first choices before any second choice") {
  // 6 tokens, E = 2, k = 2, capacity 4 (6 * 2 * 0.6 / 2 = 3.6 -> 4).
  // first choices: e1 e1 e0 e0 e0 e0; second choices: e0 e0 e1 e1 e1 e1.
  std::vector<int64_t> experts{1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1};
  std::vector<double> priority(6, 0.5);
  Plan p = route(experts, priority, 6, 2, 2, 6, 0.6, TokenOrder::vanilla);
  REQUIRE(p.rows_per_expert == 4);
  // Expert 0: first choices of tokens 2..5. Expert 1: first choices of 0, 1, then the second
  // choices of 2 and 3. Token-major order would have given expert 0 tokens 0..3 instead.
  CHECK(p.dispatch_rows == std::vector<int64_t>{2, 3, 4, 5, 0, 1, 2, 3});
  CHECK(p.combine_rows == std::vector<int64_t>{4, -1, 5, -1, 0, 6, 1, 7, 2, -1, 3, -1});
  CHECK(p.dropped == 4);
}

TEST_CASE("moe: groups are routed independently, each with its own capacity") {
  // 2 groups of 4 tokens, E = 2, k = 1, capacity 4 each (4 * 1 * 2 / 2 = 4).
  std::vector<int64_t> experts(8, 1);
  std::vector<double> priority(8, 0.5);
  Plan p = route(experts, priority, 8, 1, 2, 4, 2.0, TokenOrder::vanilla);
  CHECK(p.capacity == std::vector<int64_t>{4, 4});
  CHECK(p.rows_per_expert == 8);
  CHECK(p.dropped == 0);
  // Expert 1's rows: group 0 in rows 0..3 of its block, group 1 in rows 4..7.
  std::vector<int64_t> e1(p.dispatch_rows.begin() + 8, p.dispatch_rows.end());
  CHECK(e1 == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("moe: importance and load losses match hand-computed values") {
  // p_clean of 2 tokens over 2 experts: importance = [1.2, 0.8], mean 1, var 0.04.
  Tensor p = Tensor::from_vector<double>({0.7, 0.3, 0.5, 0.5}, {2, 2});
  CHECK(importance_loss(p).cpu().item() == Approx(0.04));
  // Load: k = 1, sigma = 1; kth = argmax of the noisy logits.
  Tensor logits = Tensor::from_vector<double>({1.0, 0.0, 0.0, 0.5}, {2, 2});
  Tensor noisy = Tensor::from_vector<double>({1.2, -0.1, 0.3, 0.4}, {2, 2});
  Tensor kth = Tensor::from_vector<int64_t>({0, 1}, {2, 1});
  auto phi = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  // P[s, e] = Phi(logits[s, e] - thr_s): thr = [1.2, 0.4].
  const double l0 = (phi(1.0 - 1.2) + phi(0.0 - 0.4)) / 2,
               l1 = (phi(0.0 - 1.2) + phi(0.5 - 0.4)) / 2;
  const double m = (l0 + l1) / 2, var = ((l0 - m) * (l0 - m) + (l1 - m) * (l1 - m)) / 2;
  CHECK(load_loss(logits, noisy, kth, 1.0).cpu().item() == Approx(var / (m * m)));
  // GShard: E^2 * mean_e(frac_e * mean_s p) with frac = [1, 0] -> 4 * (1 * 0.6 + 0) / 2.
  CHECK(gshard_loss(p, Tensor::from_vector<double>({1.0, 0.0}, {2})).cpu().item() == Approx(1.2));
}

TEST_CASE("moe: grouped auxiliary losses equal the sums of the per-group losses") {
  // Values and gradients (f64) of the batched forms against the single-group forms summed over
  // the groups: groups of 6 tokens with N a multiple, N with a last partial group of 5, and N
  // smaller than one group.
  const int64_t e = 5, gs = 6;
  const double sigma = 0.7;
  for (int64_t n : {24, 23, 4}) {
    INFO("n = " << n);
    const std::vector<double> av =
        randn({n, e}, RngKey{5, 1}, 0, DType::f64, default_device()).cpu().to_vector<double>();
    const std::vector<double> bv =
        randn({n, e}, RngKey{5, 2}, 0, DType::f64, default_device()).cpu().to_vector<double>();
    const Tensor b0 = Tensor::from_vector(bv, {n, e});
    const Tensor kth = topk(b0, 2).indices.slice(1, 1, 2);  // [N, 1]
    const Tensor first = topk(b0, 1).indices.reshape({n});  // [N]
    struct Result {
      double value = 0;
      std::vector<double> ga, gb;
    };
    auto run = [&](const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
      Tensor a = Tensor::from_vector(av, {n, e}).set_requires_grad(true);
      Tensor b = Tensor::from_vector(bv, {n, e}).set_requires_grad(true);
      Tensor loss = f(a, b);
      loss.backward();
      Result r;
      r.value = loss.cpu().item();
      r.ga = a.grad().cpu().to_vector<double>();
      if (b.grad().defined()) r.gb = b.grad().cpu().to_vector<double>();
      return r;
    };
    auto per_group = [&](const std::function<Tensor(int64_t, int64_t)>& f) {
      Tensor total;
      for (int64_t s0 = 0; s0 < n; s0 += gs) {
        Tensor l = f(s0, std::min(n, s0 + gs));
        total = total.defined() ? total + l : l;
      }
      return total;
    };
    auto same = [](const Result& x, const Result& y) {
      CHECK(x.value == Approx(y.value).epsilon(1e-12));
      CHECK(x.value > 0);
      REQUIRE(x.ga.size() == y.ga.size());
      REQUIRE(x.gb.size() == y.gb.size());
      for (size_t i = 0; i < x.ga.size(); ++i)
        CHECK(x.ga[i] == Approx(y.ga[i]).margin(1e-12));
      for (size_t i = 0; i < x.gb.size(); ++i)
        CHECK(x.gb[i] == Approx(y.gb[i]).margin(1e-12));
    };
    same(run([&](const Tensor& a, const Tensor&) {
           return grouped_importance_loss(softmax(a), gs);
         }),
         run([&](const Tensor& a, const Tensor&) {
           Tensor p = softmax(a);
           return per_group(
               [&](int64_t s0, int64_t s1) { return importance_loss(p.slice(0, s0, s1)); });
         }));
    const Result load = run(
        [&](const Tensor& a, const Tensor& b) { return grouped_load_loss(a, b, kth, sigma, gs); });
    CHECK(load.gb.size() == size_t(n * e));  // the thresholds' gradient reaches noisy_logits
    same(load, run([&](const Tensor& a, const Tensor& b) {
           return per_group([&](int64_t s0, int64_t s1) {
             return load_loss(a.slice(0, s0, s1), b.slice(0, s0, s1), kth.slice(0, s0, s1), sigma);
           });
         }));
    same(run([&](const Tensor& a, const Tensor&) {
           return grouped_gshard_loss(softmax(a), first, gs);
         }),
         run([&](const Tensor& a, const Tensor&) {
           Tensor p = softmax(a);
           return per_group([&](int64_t s0, int64_t s1) {
             Tensor frac = mean(one_hot(first.slice(0, s0, s1), e, DType::f64), {0});
             return gshard_loss(p.slice(0, s0, s1), frac);
           });
         }));
  }
  CHECK_THROWS_WITH(grouped_importance_loss(Tensor::zeros({4, 2}, DType::f64), 0),
                    Catch::Contains("group_size"));
}

TEST_CASE("moe: perfectly balanced gates give a finite zero loss and a finite gradient") {
  Tensor logits = Tensor::zeros({6, 4}, DType::f64).set_requires_grad(true);
  Tensor loss = importance_loss(softmax(logits));
  loss.backward();
  CHECK(loss.cpu().item() == Approx(0.0).margin(1e-15));
  for (double g : logits.grad().cpu().to_vector<double>()) {
    CHECK(std::isfinite(g));
    CHECK(std::abs(g) < 1e-12);
  }
}

TEST_CASE("moe: finite-difference gradients through router and experts (f64)") {
  for (Mode mode : {Mode::eval, Mode::train}) {
    MoeConfig c;
    c.num_experts = 4;
    c.k = 2;
    c.capacity_factor = c.eval_capacity_factor = 0.75;  // some assignments are dropped
    c.batch_priority = c.eval_batch_priority = true;
    c.images_per_group = 2;
    c.noise_std = 1.0;
    c.importance_loss_weight = 0.3;  // large weights so the aux gradients are visible
    c.load_loss_weight = 0.3;
    c.gshard_loss_weight = 0.2;
    SmallMoe m(c, 5, DType::f64);
    Tensor x = randn({4, 5, 6}, RngKey{5, 1}, 0, DType::f64);
    Tensor r = randn({4, 5, 6}, RngKey{5, 2}, 0, DType::f64);
    ForwardContext ctx{mode, RngKey{11, 0}, 0};
    std::vector<MoeReport> reports;
    ForwardContext probe = ctx;
    probe.moe_reports = &reports;
    (void)(*m.layer)(x, probe, 0);
    REQUIRE(dropped_fraction(reports[0]) > 0);
    const double worst = worst_gradient_error(m, x, r, ctx);
    INFO("mode " << (mode == Mode::train ? "train" : "eval"));
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("moe: the auxiliary loss does not depend on a report sink") {
  MoeConfig c;
  c.num_experts = 4;
  c.k = 2;
  c.images_per_group = 2;
  c.importance_loss_weight = 0.3;
  c.load_loss_weight = 0.2;
  c.gshard_loss_weight = 0.1;
  SmallMoe m(c, 5, DType::f64);
  const Tensor x = randn({4, 5, 6}, RngKey{5, 1}, 0, DType::f64);
  const Tensor r = randn({4, 5, 6}, RngKey{5, 2}, 0, DType::f64);
  for (Mode mode : {Mode::train, Mode::eval}) {
    INFO((mode == Mode::train ? "train" : "eval"));
    const ForwardContext bare{mode, RngKey{11, 0}, 0};  // no reports: a tool, or a new model
    std::vector<MoeReport> reports;
    ForwardContext reported = bare;
    reported.moe_reports = &reports;

    m.store.zero_grads();
    const FeedForwardOutput a = (*m.layer)(x, bare, 0);
    REQUIRE(a.aux_loss.defined());
    (sum_all(a.out * r) + a.aux_loss).backward();
    const std::vector<double> grad_bare =
        m.store.flat_grads(Sharding::replicated).cpu().to_vector<double>();

    m.store.zero_grads();
    const FeedForwardOutput b = (*m.layer)(x, reported, 0);
    (sum_all(b.out * r) + b.aux_loss).backward();
    const std::vector<double> grad_reported =
        m.store.flat_grads(Sharding::replicated).cpu().to_vector<double>();

    const double aux = a.aux_loss.cpu().item();
    CHECK(aux > 0);
    CHECK(aux == b.aux_loss.cpu().item());
    CHECK(aux == reports.at(0).aux_loss.cpu().item());  // the report's copy, for diagnostics
    // The router kernel's gradient includes the auxiliary losses' share, identically.
    CHECK(grad_bare == grad_reported);
  }
}

TEST_CASE("moe: test-time routing overrides are optional, unset keeps the config's") {
  MoeConfig c;
  c.num_experts = 2;
  c.k = 1;
  c.capacity_factor = c.eval_capacity_factor = 2.0;  // room for every token
  c.images_per_group = 8;
  SmallMoe m(c, 5, DType::f64);
  const Tensor x = randn({8, 5, 6}, RngKey{4, 4}, 0, DType::f64);
  auto dropped = [&](const ForwardContext& base) {
    std::vector<MoeReport> reports;
    ForwardContext ctx = base;
    ctx.moe_reports = &reports;
    (void)(*m.layer)(x, ctx, 0);
    return dropped_fraction(reports.at(0));
  };
  ForwardContext ctx{Mode::eval, RngKey{}, 0};
  CHECK_FALSE(ctx.eval_capacity_factor.has_value());
  CHECK_FALSE(ctx.eval_batch_priority.has_value());
  CHECK(dropped(ctx) == 0);
  ctx.eval_capacity_factor = 0.1;  // 4 slots per expert for 40 tokens
  CHECK(dropped(ctx) == Approx(32.0 / 40.0));
  ctx.eval_batch_priority = true;
  CHECK(dropped(ctx) == Approx(32.0 / 40.0));
  ctx.eval_capacity_factor.reset();
  CHECK(dropped(ctx) == 0);
}

TEST_CASE("moe: E = 1, k = 1 with ample capacity equals the dense MLP") {
  MoeConfig c;
  c.num_experts = 1;
  c.k = 1;
  c.capacity_factor = c.eval_capacity_factor = 2.0;
  c.images_per_group = 2;
  SmallMoe m(c, 3, DType::f64, 4, 7);
  ParameterStore dense_store;
  MlpBlock dense(dense_store, "mlp", 4, 7, 0.0);
  dense_store.allocate(0, DType::f64);
  for (const char* n : {"fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias"}) {
    Tensor dst = dense_store.value(std::string("mlp/") + n).detach();
    Tensor src = m.store.value(std::string("moe/experts/") + n);
    copy_(dst, src.reshape(dst.shape()));
  }
  Tensor x = randn({4, 3, 4}, RngKey{2, 2}, 0, DType::f64);
  for (Mode mode : {Mode::eval, Mode::train}) {
    ForwardContext ctx{mode, RngKey{1, 1}, 0};
    auto a = (*m.layer)(x, ctx, 0).out.cpu().to_vector<double>();
    auto b = dense(x, ctx, 0).out.cpu().to_vector<double>();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      CHECK(a[i] == Approx(b[i]).epsilon(1e-12));
  }
}

TEST_CASE("moe: evaluation is deterministic and training noise comes from the seed") {
  MoeConfig c;
  c.num_experts = 4;
  c.images_per_group = 2;
  SmallMoe m(c, 5, DType::f32);
  Tensor x = randn({4, 5, 6}, RngKey{1, 2});
  ForwardContext eval{Mode::eval, RngKey{1, 0}, 0};
  CHECK((*m.layer)(x, eval, 0).out.cpu().to_vector<float>() ==
        (*m.layer)(x, eval, 0).out.cpu().to_vector<float>());
  ForwardContext t1{Mode::train, RngKey{1, 0}, 0}, t2{Mode::train, RngKey{2, 0}, 0};
  CHECK((*m.layer)(x, t1, 0).out.cpu().to_vector<float>() ==
        (*m.layer)(x, t1, 0).out.cpu().to_vector<float>());
  std::vector<MoeReport> r1, r2;
  t1.moe_reports = &r1;
  t1.record_routing = true;
  t2.moe_reports = &r2;
  t2.record_routing = true;
  (void)(*m.layer)(x, t1, 0);
  (void)(*m.layer)(x, t2, 0);
  CHECK(r1[0].routing.weights.cpu().to_vector<float>() !=
        r2[0].routing.weights.cpu().to_vector<float>());
}

TEST_CASE("moe: routing noise does not depend on how the batch is split") {
  MoeConfig c;
  c.num_experts = 4;
  c.images_per_group = 2;
  c.noise_std = 2.0;
  SmallMoe m(c, 5, DType::f64);
  Tensor x = randn({8, 5, 6}, RngKey{3, 3}, 0, DType::f64);
  ForwardContext whole{Mode::train, RngKey{7, 0}, 100};
  auto full = (*m.layer)(x, whole, 0).out.cpu().to_vector<double>();
  ForwardContext first{Mode::train, RngKey{7, 0}, 100}, second{Mode::train, RngKey{7, 0}, 104};
  auto a = (*m.layer)(x.slice(0, 0, 4), first, 0).out.cpu().to_vector<double>();
  auto b = (*m.layer)(x.slice(0, 4, 8), second, 0).out.cpu().to_vector<double>();
  a.insert(a.end(), b.begin(), b.end());
  REQUIRE(a.size() == full.size());
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(a[i] == full[i]);
}

TEST_CASE("moe: a token with every assignment dropped passes through the residual unchanged") {
  MoeConfig c;
  c.num_experts = 2;
  c.k = 1;
  c.capacity_factor = c.eval_capacity_factor = 0.1;  // 4 slots per expert for 40 tokens
  c.images_per_group = 8;
  SmallMoe m(c, 5, DType::f64);
  Tensor x = randn({8, 5, 6}, RngKey{4, 4}, 0, DType::f64);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::eval, RngKey{}, 0};
  ctx.moe_reports = &reports;
  ctx.record_routing = true;
  Tensor out = (*m.layer)(x, ctx, 0).out;
  const auto kept = reports[0].routing.kept.cpu().to_vector<uint8_t>();
  const auto values = out.reshape({40, 6}).cpu().to_vector<double>();
  int dropped_tokens = 0;
  for (size_t t = 0; t < 40; ++t) {
    if (kept[t]) continue;
    ++dropped_tokens;
    for (size_t j = 0; j < 6; ++j)
      CHECK(values[t * 6 + j] == 0.0);
  }
  CHECK(dropped_tokens == 32);
  CHECK(dropped_fraction(reports[0]) == Approx(32.0 / 40.0));
  // In an encoder block the MoE output is added to the residual: x + 0 = x for those tokens.
}

TEST_CASE("moe: a V-MoE ViT has MoE layers at the placement and an aux loss") {
  VitConfig v;
  v.num_layers = 4;
  MoeConfig c;
  c.num_experts = 4;
  c.moe_blocks = every_n_blocks(4, 2);
  v.moe = c;
  ParameterStore store;
  VisionTransformer model(store, v);
  store.allocate(1);
  CHECK(store.contains("encoder/block_01/moe/router/kernel"));
  CHECK(store.contains("encoder/block_03/moe/experts/fc1/kernel"));
  CHECK(store.contains("encoder/block_00/mlp/fc1/kernel"));
  CHECK_FALSE(store.contains("encoder/block_01/mlp/fc1/kernel"));
  CHECK(store.value("encoder/block_01/moe/experts/fc1/kernel").shape() == Shape{4, 64, 128});
  // Identical expert initialisation: every expert starts as a copy of the first.
  auto w = store.value("encoder/block_01/moe/experts/fc1/kernel").cpu().to_vector<float>();
  CHECK(std::equal(w.begin(), w.begin() + 64 * 128, w.begin() + 3 * 64 * 128));
  Tensor images = randn({8, 28, 28, 1}, RngKey{1, 1});
  VitOutput out = model(images, ForwardContext{Mode::train, RngKey{1, 0}, 0});
  CHECK(out.moe.size() == 2);
  REQUIRE(out.aux_loss.defined());
  CHECK(std::isfinite(out.aux_loss.cpu().item()));
}

TEST_CASE("moe: an f64 V-MoE computes in f64 from f32 images and trains") {
  VitConfig v;
  v.num_layers = 2;
  v.hidden_size = 16;
  v.mlp_dim = 16;
  v.num_heads = 2;
  MoeConfig c;
  c.num_experts = 4;
  c.images_per_group = 2;
  c.moe_blocks = {1};
  v.moe = c;
  ParameterStore store;
  VisionTransformer model(store, v);
  store.allocate(1, DType::f64);
  const Tensor images = randn({4, 28, 28, 1}, RngKey{1, 1});  // f32, as batches arrive
  VitOutput out = model(images, ForwardContext{Mode::train, RngKey{1, 0}, 0});
  CHECK(out.logits.dtype() == DType::f64);
  REQUIRE(out.aux_loss.defined());
  (sum_all(out.logits) + out.aux_loss).backward();
  for (double g : store.flat_grads(Sharding::replicated).cpu().to_vector<double>())
    REQUIRE(std::isfinite(g));
}

TEST_CASE("device: a MoE layer's forward, backward and AdamW step read nothing from the device") {
  // On the strict device every device -> host copy is counted: routing (top-k, BPR order,
  // slot assignment), dispatch, experts, combine, auxiliary losses, statistics, the gradient
  // norm and the clipped update must all stay on the device.
  MoeConfig c;
  c.num_experts = 4;
  c.k = 2;
  c.capacity_factor = 0.75;  // drops, so capacity and masks matter
  c.batch_priority = true;
  c.images_per_group = 2;
  c.gshard_loss_weight = 0.1;
  c.moe_blocks = {0};
  ParameterStore store;
  MoeLayer layer(store, "moe", 6, 5, 5, c);
  store.allocate(3, DType::f32, kCpuStrict);
  AdamW optimizer(store, AdamWOptions{});
  const Tensor x = randn({6, 5, 6}, RngKey{5, 1}, 0, DType::f32, kCpuStrict);  // 3 groups
  const Tensor r = randn({6, 5, 6}, RngKey{5, 2}, 0, DType::f32, kCpuStrict);

  const TransferCounter transfers(kCpuStrict);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::train, RngKey{11, 0}, 0};
  ctx.moe_reports = &reports;
  Tensor out = layer(x, ctx, 0).out;
  Tensor loss = sum_all(out * r) + reports.at(0).aux_loss;
  loss.backward();
  optimizer.step(store, 1e-3, {grad_norm_squared(store), 0.5});
  CHECK(transfers.now().to_host == 0);
  CHECK(transfers.now().from_host == 0);
  CHECK(transfers.now().synchronizations == 0);

  // Reading the figures for a log line is what costs a host read: two (stats, loads).
  const MoeStats stats = MoeStats::read(reports[0]);
  CHECK(transfers.now().to_host == 2);
  CHECK(stats.dropped_fraction > 0);
  int64_t kept = 0;
  for (int64_t l : stats.expert_load)
    kept += l;
  CHECK(double(kept) == Approx((1 - stats.dropped_fraction) * 30 * 2));
}

TEST_CASE("moe: the layer's cost counts the load and GShard losses' tensors exactly") {
  // What a training forward keeps (tape on, input requiring grad) against MoeLayer::cost as the
  // plan counts it (small tensors take the allocator's smallest block), compared as the change
  // when the load loss (router noise) and then the GShard loss are switched on, which isolates
  // the losses' tensors. Sizes are whole size classes so that the two agree exactly: 4 groups
  // of 2 images x 16 tokens, and batch 9 adds a last group of 1 image.
  auto in_use = [] {
    return int64_t(backend_for(default_device()).allocator->stats().in_use_bytes);
  };
  for (int64_t batch : {8, 9}) {
    std::vector<int64_t> planned, real;
    for (const auto& [noise, gshard] :
         std::vector<std::pair<double, double>>{{0.0, 0.0}, {1.0, 0.0}, {1.0, 0.2}}) {
      MoeConfig c;
      c.num_experts = 4;
      c.k = 2;
      c.images_per_group = 2;
      c.noise_std = noise;
      c.gshard_loss_weight = gshard;
      SmallMoe m(c, 16, DType::f32, 8, 8);
      Tensor x = randn({batch, 16, 8}, RngKey{5, 1}, 0, DType::f32).set_requires_grad(true);
      const int64_t before = in_use();
      FeedForwardOutput y = (*m.layer)(x, ForwardContext{Mode::train, RngKey{11, 0}, 0}, 0);
      real.push_back(in_use() - before);
      CostShape shape;
      shape.batch = batch;
      const LayerCost cost = m.layer->cost(shape, 16);
      planned.push_back(cost.kept_bytes +
                        cost.small_tensors * int64_t(CachingAllocator::block_size(1)));
    }
    INFO("batch " << batch);
    CHECK(planned[1] - planned[0] == real[1] - real[0]);
    CHECK(planned[2] - planned[1] == real[2] - real[1]);
  }
}
