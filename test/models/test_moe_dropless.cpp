// Dropless top-k router (models/moe_dropless.cpp): finite-difference gradients of the whole
// layer, equality with the capacity top-k layer when that drops nothing (outputs, auxiliary
// loss, every gradient), no drops where the capacity router drops, experts without rows, the
// segmented experts against the batched ones, the exchange's variable-size form, mixed
// precision, and the cost against a real forward.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "core/transfer_counts.h"
#include "models/moe_layer.h"
#include "models/moe_report.h"
#include "models/precision.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/local_communicator.h"
#include "test/models/small_moe.h"

using namespace vmoe;
using vmoe::testing::measure_training_forward;
using vmoe::testing::MeasuredForward;
using vmoe::testing::planned_kept_bytes;
using vmoe::testing::SmallMoe;
using vmoe::testing::worst_gradient_error;
using vmoe::testing::worst_relative_to_largest;

namespace {

MoeConfig dropless_config() {
  MoeConfig c;
  c.num_experts = 4;
  c.k = 2;
  c.dropless = true;
  c.images_per_group = 2;
  c.importance_loss_weight = 0.3;  // large weights so the aux gradients are visible
  c.load_loss_weight = 0.3;
  c.gshard_loss_weight = 0.2;
  c.identical_expert_init = false;
  return c;
}

std::vector<double> host(const Tensor& t) {
  return t.detach().cpu().to_vector<double>();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = host(a), y = host(b);
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// One forward and backward of loss = sum(out * r) + aux.
struct Pass {
  Tensor out, aux, x_grad;
  std::vector<Tensor> grads;  // in the store's order
  MoeStats stats;
};

Pass run(SmallMoe& m, const Tensor& x_in, const Tensor& r, Mode mode) {
  Tensor x = x_in.detach().clone().set_requires_grad(true);
  m.store.zero_grads();
  std::vector<MoeReport> reports;
  ForwardContext ctx{mode, RngKey{11, 0}, 0};
  ctx.moe_reports = &reports;
  const FeedForwardOutput y = (*m.layer)(x, ctx, 0);
  Tensor loss = sum_all(y.out * r);
  if (y.aux_loss.defined()) loss = loss + y.aux_loss;
  loss.backward();
  Pass p;
  p.out = y.out.detach();
  p.aux = y.aux_loss.defined() ? y.aux_loss.detach() : Tensor::zeros({1}, DType::f64);
  p.x_grad = x.grad();
  for (const ParamInfo& info : m.store.infos())
    p.grads.push_back(m.store.grad(info.name).clone());
  p.stats = MoeStats::read(reports.at(0));
  return p;
}

// Routes every token to experts 0 and 1 (of E): a large first feature and router row.
void steer_to_two(SmallMoe& m, Tensor& x, int64_t experts) {
  Tensor w = m.store.value("moe/router/kernel").detach();  // [D, E]
  for (int64_t e = 0; e < experts; ++e)
    testing::set_element(w, e, e < 2 ? 5.0 : -5.0);
  std::vector<double> v = host(x);
  const int64_t d = x.size(2);
  for (size_t i = 0; i < v.size(); i += size_t(d))
    v[i] = 10.0;
  x = Tensor::from_vector(v, x.shape(), x.device());
}

}  // namespace

TEST_CASE("moe dropless: finite-difference gradients of the whole layer (train with noise, eval)",
          "[dropless]") {
  for (Mode mode : {Mode::train, Mode::eval}) {
    CAPTURE(mode == Mode::train);
    SmallMoe m(dropless_config(), 5, DType::f64);
    const Tensor x = randn({4, 5, 6}, RngKey{5, 1}, 0, DType::f64);  // 2 groups of 10 tokens
    const Tensor r = randn({4, 5, 6}, RngKey{5, 2}, 0, DType::f64);
    const double worst = worst_gradient_error(m, x, r, ForwardContext{mode, RngKey{11, 0}, 0});
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("moe dropless: equals the capacity top-k layer when that drops nothing", "[dropless]") {
  // Same seed, so the same parameters; the capacity router with a capacity of every token.
  const MoeConfig dropless = dropless_config();
  MoeConfig capacity = dropless;
  capacity.dropless = false;
  capacity.capacity_factor = capacity.eval_capacity_factor = 4.0;  // C = S k 4 / E >= S
  const Tensor x = randn({6, 5, 6}, RngKey{5, 1}, 0, DType::f64);  // 3 groups
  const Tensor r = randn({6, 5, 6}, RngKey{5, 2}, 0, DType::f64);
  for (Mode mode : {Mode::train, Mode::eval}) {
    CAPTURE(mode == Mode::train);
    SmallMoe a(dropless, 5, DType::f64), b(capacity, 5, DType::f64);
    const Pass p = run(a, x, r, mode), q = run(b, x, r, mode);
    REQUIRE(q.stats.dropped_fraction == 0.0);
    CHECK(p.stats.dropped_fraction == 0.0);
    CHECK(p.stats.expert_load == q.stats.expert_load);
    CHECK(p.stats.importance_loss == q.stats.importance_loss);
    CHECK(p.stats.load_loss == q.stats.load_loss);
    CHECK(p.stats.gshard_loss == q.stats.gshard_loss);
    CHECK(max_abs_diff(p.out, q.out) <= 1e-13);
    CHECK(max_abs_diff(p.aux, q.aux) == 0.0);
    CHECK(max_abs_diff(p.x_grad, q.x_grad) <= 1e-12);
    REQUIRE(p.grads.size() == q.grads.size());
    for (size_t i = 0; i < p.grads.size(); ++i) {
      CAPTURE(a.store.infos()[i].name);
      CHECK(max_abs_diff(p.grads[i], q.grads[i]) <= 1e-12);
    }
  }
}

TEST_CASE("moe dropless: drops nothing where the capacity router drops", "[dropless]") {
  const MoeConfig dropless = dropless_config();
  MoeConfig capacity = dropless;
  capacity.dropless = false;
  capacity.capacity_factor = 0.5;
  const Tensor x = randn({6, 5, 6}, RngKey{5, 1}, 0, DType::f64);
  const Tensor r = randn({6, 5, 6}, RngKey{5, 2}, 0, DType::f64);
  SmallMoe a(dropless, 5, DType::f64), b(capacity, 5, DType::f64);
  const Pass p = run(a, x, r, Mode::train), q = run(b, x, r, Mode::train);
  CHECK(q.stats.dropped_fraction > 0.0);
  CHECK(p.stats.dropped_fraction == 0.0);
  const int64_t n = 6 * 5, k = dropless.k;
  CHECK(std::accumulate(p.stats.expert_load.begin(), p.stats.expert_load.end(), int64_t(0)) ==
        n * k);
  // The capacity router's output lost the dropped choices.
  CHECK(max_abs_diff(p.out, q.out) > 1e-3);
}

TEST_CASE("moe dropless: the routing record keeps every choice", "[dropless]") {
  SmallMoe m(dropless_config(), 5, DType::f64);
  const Tensor x = randn({2, 5, 6}, RngKey{5, 1}, 0, DType::f64);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::eval, RngKey{11, 0}, 0};
  ctx.moe_reports = &reports;
  ctx.record_routing = true;
  (void)(*m.layer)(x, ctx, 0);
  const RoutingRecord& routing = reports.at(0).routing;
  const std::vector<uint8_t> kept = routing.kept.cpu().to_vector<uint8_t>();
  CHECK(kept.size() == 10 * 2);
  CHECK(std::all_of(kept.begin(), kept.end(), [](uint8_t v) { return v == 1; }));
  CHECK(routing.experts.shape() == Shape{10, 2});
}

TEST_CASE("moe dropless: experts without rows get zero gradients", "[dropless]") {
  const MoeConfig c = dropless_config();  // E = 4, k = 2
  SmallMoe m(c, 5, DType::f64);
  Tensor x = randn({4, 5, 6}, RngKey{5, 1}, 0, DType::f64);
  steer_to_two(m, x, c.num_experts);
  const Tensor r = randn({4, 5, 6}, RngKey{5, 2}, 0, DType::f64);
  const Pass p = run(m, x, r, Mode::train);
  CHECK(p.stats.expert_load == std::vector<int64_t>{20, 20, 0, 0});
  for (double v : host(p.out))
    CHECK(std::isfinite(v));
  for (const char* name : {"moe/experts/fc1/kernel", "moe/experts/fc1/bias",
                           "moe/experts/fc2/kernel", "moe/experts/fc2/bias"}) {
    const Tensor g = m.store.grad(name);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      CAPTURE(name, e);
      const double norm = sum_squares(g.slice(0, e, e + 1).contiguous()).cpu().item();
      if (e < 2)
        CHECK(norm > 0.0);
      else
        CHECK(norm == 0.0);
    }
  }
  CHECK(worst_gradient_error(m, x, r, ForwardContext{Mode::eval, RngKey{11, 0}, 0}) <= 1.0);
}

TEST_CASE("moe dropless: segmented experts equal the batched experts", "[dropless]") {
  // Rows of 3 experts with counts {2, 0, 3} against an [E, R, D] batch padded with zero rows.
  const int64_t d = 6, mlp = 5;
  ParameterStore store;
  StackedExperts experts(store, "experts", 3, d, mlp, ExpertInit::independent);
  store.allocate(4, DType::f64);
  for (const ParamInfo& info : store.infos()) {
    Tensor v = store.value(info.name).detach();
    initialize(v, InitSpec::normal(0.5), derive(RngKey{4, 9}, info.name));
  }
  const std::vector<int64_t> counts{2, 0, 3};
  const Tensor rows = randn({5, d}, RngKey{6, 1}, 0, DType::f64);
  const Tensor y = experts.segments(rows, counts);
  Tensor padded = Tensor::zeros({3, 3, d}, DType::f64);
  Tensor first = padded.slice(0, 0, 1).slice(1, 0, 2).reshape({2, d});
  copy_(first, rows.slice(0, 0, 2));
  Tensor third = padded.slice(0, 2, 3).reshape({3, d});
  copy_(third, rows.slice(0, 2, 5));
  const Tensor batched = experts(padded);
  CHECK(max_abs_diff(y.slice(0, 0, 2), batched.slice(0, 0, 1).slice(1, 0, 2).reshape({2, d})) ==
        0.0);
  CHECK(max_abs_diff(y.slice(0, 2, 5), batched.slice(0, 2, 3).reshape({3, d})) == 0.0);
  // The expert without rows: zero gradients; the others: some.
  sum_all(y * randn({5, d}, RngKey{6, 2}, 0, DType::f64)).backward();
  for (const ParamInfo& info : store.infos()) {
    const Tensor g = store.grad(info.name);
    for (int64_t e = 0; e < 3; ++e) {
      CAPTURE(info.name, e);
      const double norm = sum_squares(g.slice(0, e, e + 1).contiguous()).cpu().item();
      CHECK((norm == 0.0) == (e == 1));
    }
  }
  // Bad counts name what is wrong.
  CHECK_THROWS_WITH(experts.segments(rows, {2, 0, 2}),
                    Catch::Contains("counts sum 4") && Catch::Contains("rows [5, 6] f64"));
  CHECK_THROWS_WITH(experts.segments(rows, {6, -1, 0}), Catch::Contains("negative row count -1"));
}

TEST_CASE("moe dropless: the exchange's variable-size form, local and expert parallel",
          "[dropless]") {
  // Expert l scales its rows by scale[l]; 3 experts with counts {2, 0, 4}. The expert-parallel
  // exchange over a one-rank group (counts all_to_all, rows all_to_all_v, reorder) and the
  // local one give the same outputs and gradients, and neither reads the device from the host.
  const std::vector<int64_t> counts{2, 0, 4};
  const std::vector<int64_t> expert_of_row{0, 0, 2, 2, 2, 2};
  const int64_t d = 2;
  std::vector<double> v(6 * d), w(6 * d);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = double(i) + 1;
    w[i] = double(i % 3) - 0.5;
  }
  const ExpertParallelExchange parallel(std::make_shared<LocalCommunicator>("expert group"), 3);
  const LocalExchange local;
  for (const ExpertExchange* exchange : {static_cast<const ExpertExchange*>(&parallel),
                                         static_cast<const ExpertExchange*>(&local)}) {
    Tensor rows = Tensor::from_vector(v, {6, d}, kCpuStrict).set_requires_grad(true);
    Tensor scale =
        Tensor::from_vector<double>({2, 3, 5}, {3, 1}, kCpuStrict).set_requires_grad(true);
    const Tensor weights = Tensor::from_vector(w, {6, d}, kCpuStrict);
    std::vector<int64_t> seen;
    const TransferCounter transfers(kCpuStrict);
    Tensor out = exchange->segments(
        rows, counts, [&](const Tensor& x, const std::vector<int64_t>& local_counts) {
          seen = local_counts;
          std::vector<Tensor> parts;
          int64_t at = 0;
          for (int64_t l = 0; l < 3; ++l) {
            const int64_t c = local_counts[size_t(l)];
            if (c > 0) parts.push_back(x.slice(0, at, at + c) * scale.slice(0, l, l + 1));
            at += c;
          }
          return concat(parts, 0);
        });
    sum_all(out * weights).backward();
    CHECK(transfers.now().to_host == 0);
    CHECK(seen == counts);
    const std::vector<double> y = out.cpu().to_vector<double>();
    const std::vector<double> gx = rows.grad().cpu().to_vector<double>();
    const std::vector<double> gs = scale.grad().cpu().to_vector<double>();
    std::vector<double> expected_gs(3, 0.0);
    for (size_t i = 0; i < v.size(); ++i) {
      const int64_t e = expert_of_row[i / size_t(d)];
      const double sc = e == 0 ? 2.0 : 5.0;
      CHECK(y[i] == v[i] * sc);
      CHECK(gx[i] == w[i] * sc);
      expected_gs[size_t(e)] += w[i] * v[i];
    }
    CHECK(gs == expected_gs);
  }
  // Counts that do not describe the rows name what is wrong.
  const Tensor rows = Tensor::from_vector(v, {6, d});
  const LocalSegments identity = [](const Tensor& x, const std::vector<int64_t>&) { return x; };
  CHECK_THROWS_WITH(parallel.segments(rows, {2, 0, 3}, identity),
                    Catch::Contains("counts sum to 5"));
  CHECK_THROWS_WITH(
      parallel.segments(rows, {6, 0}, identity),
      Catch::Contains("3 per-expert counts") && Catch::Contains("got [6, 2] f64 and 2"));
}

TEST_CASE("moe dropless: a BF16 forward is close to F32", "[dropless]") {
  SmallMoe m(dropless_config(), 5, DType::f32);
  const Tensor x = randn({4, 5, 6}, RngKey{3, 1}, 0, DType::f32);
  ForwardContext ctx{Mode::eval, RngKey{}, 0};
  const std::vector<float> full = (*m.layer)(x, ctx, 0).out.cpu().to_vector<float>();
  ctx.precision = Precision::bf16;
  const Tensor mixed = (*m.layer)(to_dtype(x, DType::bf16), ctx, 0).out;
  CHECK(mixed.dtype() == DType::bf16);
  const std::vector<float> half = to_dtype(mixed, DType::f32).cpu().to_vector<float>();
  CHECK(worst_relative_to_largest(full, half) <= 0.03);
}

TEST_CASE("moe dropless: forward and backward read the device once, the expert counts",
          "[dropless]") {
  // On the strict device every device -> host copy is counted: the per-expert counts are the
  // layer's one read (they size the experts' GEMMs); routing, losses and backward stay there.
  MoeConfig c = dropless_config();
  c.num_experts = 4;
  c.moe_blocks = {0};
  ParameterStore store;
  MoeLayer layer(store, "moe", 6, 5, 5, c);
  store.allocate(3, DType::f32, kCpuStrict);
  const Tensor x =
      randn({6, 5, 6}, RngKey{5, 1}, 0, DType::f32, kCpuStrict).set_requires_grad(true);
  const Tensor r = randn({6, 5, 6}, RngKey{5, 2}, 0, DType::f32, kCpuStrict);
  const TransferCounter transfers(kCpuStrict);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::train, RngKey{11, 0}, 0};
  ctx.moe_reports = &reports;
  const FeedForwardOutput y = layer(x, ctx, 0);
  CHECK(transfers.now().to_host == 1);
  (sum_all(y.out * r) + y.aux_loss).backward();
  CHECK(transfers.now().to_host == 1);
  CHECK(transfers.now().from_host == 0);
  CHECK(MoeStats::read(reports.at(0)).dropped_fraction == 0.0);
}

TEST_CASE("moe dropless: the cost counts the forward's rows and GEMM FLOPs", "[dropless]") {
  // Sizes in whole size classes as the other routers' cost tests: E = 4, D = M = 8, 16 tokens
  // per image, 2 images per group; the kept bytes exceed the plan only by the size-class rounding
  // of the experts' variable-size tensors (4 per expert with rows).
  for (double noise : {0.0, 1.0}) {
    CAPTURE(noise);
    MoeConfig c = dropless_config();
    c.noise_std = noise;
    SmallMoe m(c, 16, DType::f32, 8, 8);
    const Tensor x = randn({4, 16, 8}, RngKey{5, 1}, 0, DType::f32).set_requires_grad(true);
    const MeasuredForward real = measure_training_forward(m, x, {Mode::train, RngKey{11, 0}, 0});
    const int64_t kept = real.kept_bytes;
    CostShape shape;
    shape.batch = 4;
    const LayerCost cost = m.layer->cost(shape, 16);
    CHECK(cost.forward_flops == real.forward_flops);
    CHECK(cost.backward_flops == real.backward_flops);
    CHECK(double(cost.forward_flops) == real.report_flops);
    CHECK(cost.active_flops == cost.forward_flops);
    const int64_t planned = planned_kept_bytes(cost);
    const int64_t slack = 4 * c.num_experts * int64_t(CachingAllocator::block_size(1));
    CAPTURE(planned, kept);
    CHECK(kept >= planned);
    CHECK(kept - planned <= slack);
  }
}
