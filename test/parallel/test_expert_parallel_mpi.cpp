// Expert parallelism under mpirun (1, 2 and 4 ranks): the chunked exchange against closed-form
// expectations (and on the strict device against the host), and the MoE layer (forward,
// backward, gradient reduction) on P ranks against the single-process layer on the whole batch,
// including replicated experts (E < P) and experts that receive no tokens. Tensors are read on
// the host through .cpu(), so the file also runs with VMOE_TEST_DEVICE=cpu_strict.
#include <mpi.h>

#include <catch2/catch.hpp>
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "models/moe_layer.h"
#include "models/moe_report.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/gradient_reducer.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"

using namespace vmoe;

namespace {

std::shared_ptr<Communicator> world() {
  return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
}
int64_t world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Value of element (rank j, expert e, row i, feature d) of the dispatched buffers.
double token_value(int64_t j, int64_t e, int64_t i, int64_t d) {
  return 1000.0 * double(j) + 100.0 * double(e) + 10.0 * double(i) + double(d);
}
int64_t rows_of(int64_t rank) {
  return 3 + 2 * rank;  // ranks hold different R, as in evaluation of uneven slices
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = to_dtype(a.detach(), DType::f64).cpu().to_vector<double>();
  const std::vector<double> y = to_dtype(b.detach(), DType::f64).cpu().to_vector<double>();
  double scale = 0, diff = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    scale = std::max(scale, std::abs(y[i]));
    diff = std::max(diff, std::abs(x[i] - y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace

TEST_CASE("exchange: rows reach their expert's owner in source order and come back marked") {
  auto w = world();
  const int64_t p = w->size(), me = w->rank(), d = 3;
  for (int64_t e : {p, 2 * p}) {
    for (int64_t chunks : {1, 2, 3, 8, 0}) {
      CAPTURE(e, chunks);
      ExpertParallelExchange exchange(w, e, chunks);
      const int64_t el = exchange.experts_per_rank(), first = me * el, r = rows_of(me);
      std::vector<double> v;
      for (int64_t x = 0; x < e; ++x)
        for (int64_t i = 0; i < r; ++i)
          for (int64_t f = 0; f < d; ++f)
            v.push_back(token_value(me, x, i, f));
      Tensor dispatched = Tensor::from_vector(v, {e, r, d});
      // Every third row is padding (-1); the others hold their feature 0's value as a token.
      std::vector<int64_t> occ;
      for (int64_t x = 0; x < e; ++x)
        for (int64_t i = 0; i < r; ++i)
          occ.push_back(i % 3 == 2 ? -1 : int64_t(token_value(me, x, i, 0)));
      const Tensor occupied = Tensor::from_vector(occ, {e * r});
      int64_t all_rows = 0;
      for (int64_t j = 0; j < p; ++j)
        all_rows += rows_of(j);
      int64_t rows_seen = 0;
      bool layout_ok = true, occupancy_ok = true;
      auto experts = [&](const Tensor& x, const Tensor& rows) {
        REQUIRE(x.size(0) == el);
        rows_seen += x.size(1);
        // Each row's occupancy came along with it, whatever the chunking.
        REQUIRE(rows.defined());
        REQUIRE(rows.shape() == Shape{el * x.size(1)});
        const std::vector<double> xs = x.cpu().to_vector<double>();
        const std::vector<int64_t> os = rows.cpu().to_vector<int64_t>();
        for (int64_t row = 0; row < el * x.size(1); ++row) {
          const int64_t code = int64_t(xs[size_t(row * d)]), i = code % 100 / 10;
          occupancy_ok = occupancy_ok && os[size_t(row)] == (i % 3 == 2 ? -1 : code);
        }
        if (chunks == 1) {  // one chunk: [E_local, sum_j R_j, D], sources in rank order
          REQUIRE(x.size(1) == all_rows);
          const std::vector<double> got = x.cpu().to_vector<double>();
          for (int64_t l = 0; l < el; ++l) {
            int64_t row = 0;
            for (int64_t j = 0; j < p; ++j)
              for (int64_t i = 0; i < rows_of(j); ++i, ++row)
                for (int64_t f = 0; f < d; ++f)
                  layout_ok = layout_ok && got[size_t((l * all_rows + row) * d + f)] ==
                                               token_value(j, first + l, i, f);
          }
        }
        std::vector<double> scale;
        for (int64_t l = 0; l < el; ++l)
          scale.push_back(double(first + l + 1));
        return x * Tensor::from_vector(scale, {el, 1, 1});
      };
      Tensor out = exchange(dispatched, occupied, experts);
      CHECK(layout_ok);
      CHECK(occupancy_ok);
      CHECK(rows_seen == all_rows);  // every chunk of every source, once
      const std::vector<double> got = out.cpu().to_vector<double>();
      bool values_ok = true;
      for (int64_t x = 0; x < e; ++x)
        for (int64_t i = 0; i < r; ++i)
          for (int64_t f = 0; f < d; ++f)
            values_ok = values_ok && got[size_t((x * r + i) * d + f)] ==
                                         token_value(me, x, i, f) * double(x + 1);
      CHECK(values_ok);
    }
  }
}

namespace {

// One exchange of E = 2P experts over the world on `device`: dispatched [E, R_me, D] coded
// token values, local experts that scale their rows by (expert index + 1), and the backward of
// sum(out * weights) with weights [E, R_me, D] in {1, 2, 3}.
struct ScaledExchange {
  std::vector<double> weights;
  Tensor dispatched, scale, out;
};

ScaledExchange scaled_exchange(const ExpertParallelExchange& exchange, int64_t d, Device device) {
  auto w = world();
  const int64_t me = w->rank(), e = 2 * w->size();
  const int64_t el = exchange.experts_per_rank(), first = me * el, r = rows_of(me);
  ScaledExchange run;
  std::vector<double> v;
  for (int64_t x = 0; x < e; ++x)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t f = 0; f < d; ++f) {
        v.push_back(token_value(me, x, i, f) / 1000.0);
        run.weights.push_back(double(1 + ((x + i + f + me) % 3)));
      }
  run.dispatched = Tensor::from_vector(v, {e, r, d}, device);
  run.dispatched.set_requires_grad(true);
  std::vector<double> s0;
  for (int64_t l = 0; l < el; ++l)
    s0.push_back(double(first + l + 1));
  run.scale = Tensor::from_vector(s0, {el, 1, 1}, device);
  run.scale.set_requires_grad(true);
  const Tensor scale = run.scale;
  run.out = exchange(run.dispatched, Tensor(),
                     [scale](const Tensor& x, const Tensor&) { return x * scale; });
  sum_all(run.out * Tensor::from_vector(run.weights, {e, r, d}, device)).backward();
  return run;
}

}  // namespace

TEST_CASE("exchange: backward returns each row's gradient and sums the owners' parameters") {
  auto w = world();
  const int64_t p = w->size(), me = w->rank(), d = 2, e = 2 * p;
  for (int64_t chunks : {1, 3}) {
    CAPTURE(chunks);
    ExpertParallelExchange exchange(w, e, chunks);
    const int64_t el = exchange.experts_per_rank(), first = me * el, r = rows_of(me);
    const ScaledExchange run = scaled_exchange(exchange, d, default_device());
    const std::vector<double>& c = run.weights;
    const Tensor& dispatched = run.dispatched;
    const Tensor& scale = run.scale;
    // d/d dispatched = c * (e + 1)
    const std::vector<double> g = dispatched.grad().cpu().to_vector<double>();
    bool grad_ok = true;
    for (int64_t x = 0; x < e; ++x)
      for (int64_t i = 0; i < r * d; ++i)
        grad_ok = grad_ok && std::abs(g[size_t(x * r * d + i)] -
                                      c[size_t(x * r * d + i)] * double(x + 1)) < 1e-12;
    CHECK(grad_ok);
    // d/d scale_l = sum over every rank's rows of expert first + l of value * c.
    const std::vector<double> gs = scale.grad().cpu().to_vector<double>();
    for (int64_t l = 0; l < el; ++l) {
      double expected = 0;
      for (int64_t j = 0; j < p; ++j)
        for (int64_t i = 0; i < rows_of(j); ++i)
          for (int64_t f = 0; f < d; ++f)
            expected += token_value(j, first + l, i, f) / 1000.0 *
                        double(1 + ((first + l + i + f + j) % 3));
      CHECK(gs[size_t(l)] == Approx(expected).epsilon(1e-12));
    }
  }
}

namespace {

// One exchange over the world (E = 2P experts, uneven rows per rank) on `device`, forward and
// backward: outputs, input gradients and expert-parameter gradients read back to the host.
std::vector<double> exchange_results(Device device, int64_t chunks) {
  auto w = world();
  ExpertParallelExchange exchange(w, 2 * w->size(), chunks);
  const ScaledExchange run = scaled_exchange(exchange, 3, device);
  const Tensor &out = run.out, &dispatched = run.dispatched, &scale = run.scale;
  std::vector<double> all = out.cpu().to_vector<double>();
  for (const Tensor& t : {dispatched.grad(), scale.grad()})
    for (double x : t.cpu().to_vector<double>())
      all.push_back(x);
  return all;
}

}  // namespace

TEST_CASE("exchange: on the strict device (staged through the host by MPI) equals the host") {
  for (int64_t chunks : {1, 3}) {
    CAPTURE(chunks);
    const std::vector<double> host = exchange_results(kCpu, chunks);
    const std::vector<double> strict = exchange_results(kCpuStrict, chunks);
    CHECK(!host.empty());
    CHECK(strict == host);
  }
}

namespace {

// The same MoE layer on the whole batch in one process (reference) and on this rank's slice
// with experts sharded over the expert group.
struct LayerRun {
  Tensor out, x_grad;                   // this rank's slice
  std::map<std::string, Tensor> grads;  // local parameter gradients after reduction
  std::vector<int64_t> expert_load;
  size_t buckets = 0, buckets_before_finish = 0;
};

struct LayerCase {
  int64_t experts = 8, k = 2, dim = 8, mlp = 6, tokens = 5, images_per_group = 2;
  int64_t images_per_rank = 4;  // 2 routing groups per rank
  double capacity = 1.0;
  int64_t chunks = 0;
  bool steer_to_two = false;  // route every token to experts 0 and 1 only
  MoeRouter router = MoeRouter::top_k;
  bool dropless = false;
};

Tensor make_input(const LayerCase& c, int64_t images) {
  Tensor x = randn({images, c.tokens, c.dim}, RngKey{42, 1}, 0, DType::f64);
  if (!c.steer_to_two) return x;
  std::vector<double> v = x.cpu().to_vector<double>();
  for (int64_t t = 0; t < images * c.tokens; ++t)
    v[size_t(t * c.dim)] = 10.0;
  return Tensor::from_vector(v, x.shape(), x.device());
}

void prepare_params(ParameterStore& store, const LayerCase& c) {
  if (!c.steer_to_two) return;
  Tensor w = store.value("moe/router/kernel").detach();  // [D, E]
  std::vector<double> v = w.cpu().to_vector<double>();
  for (int64_t e = 0; e < c.experts; ++e)
    v[size_t(e)] = e < 2 ? 5.0 : -5.0;
  copy_(w, Tensor::from_vector(v, w.shape(), w.device()));
}

LayerRun run_layer(const LayerCase& c, const ProcessGroups* groups) {
  const int64_t me = groups ? groups->rank() : 0;
  const int64_t images = c.images_per_rank * (groups ? 1 : world_size());
  MoeConfig m;
  m.num_experts = c.experts;
  m.k = c.k;
  m.capacity_factor = c.capacity;
  m.images_per_group = c.images_per_group;
  m.identical_expert_init = false;
  m.moe_blocks = {0};
  m.router = c.router;
  m.dropless = c.dropless;
  if (c.router != MoeRouter::top_k) {
    m.importance_loss_weight = m.load_loss_weight = 0;  // these routers have none
    if (c.router == MoeRouter::soft) m.images_per_group = 1;
  }
  ParameterStore store;
  std::shared_ptr<const ExpertExchange> exchange = std::make_shared<LocalExchange>();
  if (groups && groups->expert->size() > 1)
    exchange = std::make_shared<ExpertParallelExchange>(groups->expert, c.experts, c.chunks);
  MoeLayer layer(store, "moe", c.dim, c.mlp, c.tokens, m, exchange);
  if (groups) store.set_expert_shard(groups->expert_shard());
  store.allocate(5, DType::f64);
  prepare_params(store, c);
  Tensor x_all = make_input(c, c.images_per_rank * world_size());
  const int64_t first = groups ? me * images : 0;
  Tensor x = x_all.slice(0, first, first + images).contiguous();
  x.set_requires_grad(true);
  Tensor weights = randn(x.shape(), RngKey{42, 2}, uint64_t(first * c.tokens * c.dim), DType::f64);
  std::vector<MoeReport> reports;
  ForwardContext ctx{Mode::train, RngKey{9, 3}, first};
  ctx.moe_reports = &reports;
  const FeedForwardOutput y = layer(x, ctx, 0);
  Tensor out = y.out;
  // Mean over this slice's images, as the training loss is.
  Tensor loss = sum_all(out * weights) * (1.0 / double(images));
  if (y.aux_loss.defined()) loss = loss + y.aux_loss;  // Experts Choice and Soft MoE have none
  LayerRun run;
  std::unique_ptr<GradientReducer> reducer;
  if (groups) reducer = std::make_unique<GradientReducer>(store, *groups, 256);
  if (reducer) {
    reducer->begin();
    {
      LeafGradReadyHook hook([&](const Tensor& leaf) { reducer->leaf_ready(leaf); });
      loss.backward();
    }
    reducer->finish();
    run.buckets = reducer->num_buckets();
    run.buckets_before_finish = reducer->buckets_launched_early();
  } else {
    loss.backward();
  }
  run.out = out.detach();
  run.x_grad = x.grad();
  for (const ParamInfo& info : store.infos())
    run.grads[info.name] = store.grad(info.name).clone();
  run.expert_load = MoeStats::read(reports.at(0)).expert_load;
  return run;
}

void check_layer_matches_single_process(const LayerCase& c) {
  auto w = world();
  const int64_t p = w->size(), me = w->rank();
  const LayerRun ref = run_layer(c, nullptr);  // whole batch, every expert local
  const ProcessGroups groups = make_process_groups(w, c.experts);
  const LayerRun run = run_layer(c, &groups);
  const int64_t images = c.images_per_rank;
  CHECK(max_rel_diff(run.out, ref.out.slice(0, me * images, (me + 1) * images)) < 1e-12);
  // The slice's loss is a mean over images / P of the batch: its input gradient is P times.
  Tensor ref_x = ref.x_grad.slice(0, me * images, (me + 1) * images) * double(p);
  CHECK(max_rel_diff(run.x_grad, ref_x) < 1e-10);
  const ExpertShard shard = groups.expert_shard();
  for (const auto& [name, g] : run.grads) {
    CAPTURE(name);
    Tensor expected = ref.grads.at(name);
    if (g.shape() != expected.shape())
      expected = expected.slice(0, shard.first, shard.first + shard.count);
    CHECK(max_rel_diff(g, expected) < 1e-10);
  }
  // Routing statistics: the ranks' loads add up to the single-process load.
  Tensor load = Tensor::from_vector(run.expert_load, {int64_t(run.expert_load.size())});
  w->all_reduce(load);
  CHECK(load.cpu().to_vector<int64_t>() == ref.expert_load);
  // On more than one rank the router's bucket started while backward ran.
  if (p > 1) CHECK(run.buckets_before_finish == run.buckets);
}

}  // namespace

TEST_CASE("moe layer: P ranks equal one process (E = 8, forward and backward)") {
  LayerCase c;
  for (int64_t chunks : {1, 2, 0}) {
    CAPTURE(chunks);
    c.chunks = chunks;
    check_layer_matches_single_process(c);
  }
}

TEST_CASE("moe layer: replicated experts (E = 2 < P) equal one process") {
  LayerCase c;
  c.experts = 2;
  c.k = 1;
  check_layer_matches_single_process(c);
}

TEST_CASE("moe layer: experts that receive no tokens get zero gradients, no hang") {
  LayerCase c;
  c.steer_to_two = true;
  c.capacity = 2.0;
  check_layer_matches_single_process(c);
  auto w = world();
  const ProcessGroups groups = make_process_groups(w, c.experts);
  const LayerRun run = run_layer(c, &groups);
  const ExpertShard shard = groups.expert_shard();
  for (const char* name : {"moe/experts/fc1/kernel", "moe/experts/fc2/bias"}) {
    const Tensor& g = run.grads.at(name);
    for (int64_t l = 0; l < shard.count; ++l) {
      const double norm = sum_squares(g.slice(0, l, l + 1).contiguous()).cpu().item();
      CAPTURE(name, shard.first + l);
      if (shard.first + l >= 2)
        CHECK(norm == 0.0);
      else
        CHECK(norm > 0.0);
    }
  }
}

TEST_CASE("moe layer: Experts Choice on P ranks equals one process") {
  LayerCase c;
  c.router = MoeRouter::experts_choice;
  for (double capacity : {0.5, 2.0}) {
    CAPTURE(capacity);
    c.capacity = capacity;
    check_layer_matches_single_process(c);
  }
}

TEST_CASE("moe layer: Soft MoE on P ranks equals one process") {
  LayerCase c;
  c.router = MoeRouter::soft;
  c.images_per_group = 1;
  for (double capacity : {1.0, 4.0}) {  // slots per expert round(5 c / 8): 1 and 3
    CAPTURE(capacity);
    c.capacity = capacity;
    check_layer_matches_single_process(c);
  }
}

TEST_CASE("moe layer: dropless top-k on P ranks equals one process") {
  LayerCase c;
  c.dropless = true;
  check_layer_matches_single_process(c);
  c.steer_to_two = true;  // experts 2..7 receive no rows: zero-sized batches and messages
  check_layer_matches_single_process(c);
}

TEST_CASE(
    "gradient reducer: buckets in order, replicated mean over all ranks, experts over replicas") {
  auto w = world();
  const int64_t p = w->size(), me = w->rank();
  for (int64_t experts : {p, int64_t(2)}) {
    if (experts > p && p > 1) continue;
    const ProcessGroups groups = make_process_groups(w, experts);
    ParameterStore store;
    for (const char* name : {"a", "b", "c"})
      store.declare(name, {3}, InitSpec::constant(1.0));
    store.declare("experts", {experts, 2}, InitSpec::constant(1.0), WeightDecay::no,
                  Sharding::expert);
    store.set_expert_shard(groups.expert_shard());
    store.allocate(0, DType::f64);
    GradientReducer reducer(store, groups, 8);  // one parameter per bucket
    CHECK(reducer.num_buckets() == 3);
    const double weight = double(me + 1);  // rank r's local loss has weight r + 1
    Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3});
    Tensor loss = (sum_all(store.value("a") * x) + sum_all(store.value("b") * x * 2.0) +
                   sum_all(store.value("c") * x * 3.0) + sum_all(store.value("experts"))) *
                  weight;
    reducer.begin();
    {
      LeafGradReadyHook hook([&](const Tensor& leaf) { reducer.leaf_ready(leaf); });
      loss.backward();
    }
    CHECK(reducer.buckets_launched_early() == (p > 1 ? 3u : 0u));
    reducer.finish();
    // Replicated: mean over ranks of (r + 1) * factor * x = (P + 1) / 2 * factor * x.
    const double mean_weight = double(p + 1) / 2.0;
    CHECK(store.grad("a").cpu().to_vector<double>() ==
          std::vector<double>{mean_weight, 2 * mean_weight, 3 * mean_weight});
    CHECK(store.grad("c").cpu().to_vector<double>()[2] == Approx(9 * mean_weight));
    // Experts: summed over the replica group (ranks holding the same experts), over P.
    double replica_sum = 0;
    const int64_t pe = groups.expert->size();
    for (int64_t r = me % pe; r < p; r += pe)
      replica_sum += double(r + 1);
    for (double g : store.grad("experts").cpu().to_vector<double>())
      CHECK(g == Approx(replica_sum / double(p)));
    // Global norm: every replicated gradient once plus every expert once.
    const double replicated_sq = mean_weight * mean_weight * 14.0 * (1 + 4 + 9);
    double experts_sq = 0;
    for (int64_t e = 0; e < experts; ++e) {
      double s = 0;  // the replica group of expert e's owner
      for (int64_t r = (e / (experts / pe)) % pe; r < p; r += pe)
        s += double(r + 1);
      experts_sq += 2 * (s / double(p)) * (s / double(p));
    }
    // On the store's device, read back once here.
    const Tensor norm_sq = reducer.grad_norm_squared();
    CHECK(norm_sq.device() == store.device());
    CHECK(norm_sq.numel() == 1);
    CHECK(norm_sq.dtype() == DType::f64);
    CHECK(norm_sq.cpu().item() == Approx(replicated_sq + experts_sq));
  }
}
