// Benchmark: forward + backward of one MoE layer (router, dispatch, experts, combine, aux
// losses), the experts' batched MLP alone (on the rows the layer fills: both skip the same
// padding rows), and a dense MLP with the FLOPs of the experts' whole buffer, timed in turn
// round by round. Prints their medians, and the share of routing +
// dispatch + combine and the ratio to the dense MLP as medians of the per-round figures.
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/cpu/blas_kernels.h"
#include "models/mlp_block.h"
#include "models/moe_layer.h"
#include "models/routing.h"

namespace {

// Wall time of fn in ms, the device's queued work included.
double time_ms(const vmoe::Backend& backend, const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  backend.synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The candidates timed in turn, round by round (A B C A B C ...), so that a shared machine's
// load hits them alike: per candidate its times, after `warmup` untimed rounds.
std::vector<std::vector<double>> interleaved_ms(const vmoe::Backend& backend, int warmup, int reps,
                                                const std::vector<std::function<void()>>& fns) {
  std::vector<std::vector<double>> ms(fns.size());
  for (int i = 0; i < warmup + reps; ++i)
    for (size_t f = 0; f < fns.size(); ++f) {
      const double t = time_ms(backend, fns[f]);
      if (i >= warmup) ms[f].push_back(t);
    }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  using namespace vmoe;
  int64_t batch = 128, tokens = 50, dim = 64, mlp = 128;
  MoeConfig c;
  c.moe_blocks = {0};
  int threads = 1, reps = 20;
  std::string device_name = "cpu", precision = "f32";
  CLI::App app{"vmoe MoE layer benchmark"};
  app.add_option("--batch", batch, "images");
  app.add_option("--tokens", tokens, "tokens per image");
  app.add_option("--dim", dim);
  app.add_option("--mlp", mlp);
  app.add_option("--experts", c.num_experts);
  app.add_option("--k", c.k);
  app.add_option("--capacity", c.capacity_factor);
  app.add_option("--images-per-group", c.images_per_group);
  app.add_option("--threads", threads);
  app.add_option("--reps", reps);
  app.add_option("--device", device_name, "cpu, cuda, cuda:N");
  app.add_option("--precision", precision, "f32 or bf16 (activations; weights stay f32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  CLI11_PARSE(app, argc, argv);
  // As in the vmoe binary: reuse freed activation memory instead of page-faulting it back.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  omp_set_num_threads(threads);
  // Everything below is created on the default device.
  set_default_device(parse_device(device_name));
  const Backend& backend = backend_for(default_device());
  // bf16: the layer follows its input's dtype (models/precision.h), weights stay f32.
  const DType act = parse_dtype(precision);

  ParameterStore store;
  MoeLayer layer(store, "moe", dim, mlp, tokens, c);
  store.allocate(0);
  Tensor x = randn({batch, tokens, dim}, RngKey{1, 1}).to(act).set_requires_grad(true);
  Tensor r = randn({batch, tokens, dim}, RngKey{1, 2}).to(act);
  ForwardContext ctx{Mode::train, RngKey{2, 0}, 0};

  std::vector<MoeReport> reports;
  auto moe_step = [&] {
    reports.clear();
    ForwardContext f = ctx;
    f.moe_reports = &reports;
    const FeedForwardOutput y = layer(x, f, 0);  // fills reports (statistics) as training does
    Tensor loss = sum_all(y.out * r) + y.aux_loss;
    loss.backward();
  };
  // The experts alone on a buffer of the same size as the layer's dispatch buffer.
  const int64_t rows =
      expert_capacity(c.images_per_group * tokens, c.k, c.capacity_factor, c.num_experts) *
      ((batch + c.images_per_group - 1) / c.images_per_group);
  ParameterStore es;
  StackedExperts experts(es, "experts", c.num_experts, dim, mlp, ExpertInit::independent);
  es.allocate(0);
  // ... holding tokens in the rows the layer fills (its routing is the same every round: fixed
  // weights, inputs and noise), so that the experts skip the same padding rows as in the layer.
  std::vector<int64_t> occupied(size_t(c.num_experts * rows), -1);
  {
    std::vector<MoeReport> seen;
    ForwardContext f = ctx;
    f.moe_reports = &seen;
    f.record_routing = true;
    NoGrad no_grad;
    (void)layer(x, f, 0);
    const std::vector<int64_t> chosen = seen.at(0).routing.experts.cpu().to_vector<int64_t>();
    const std::vector<uint8_t> kept = seen.at(0).routing.kept.cpu().to_vector<uint8_t>();
    const SlotLayout L = routing_layout(batch * tokens, c.k, c.num_experts,
                                        c.images_per_group * tokens, c.capacity_factor);
    std::vector<int64_t> fill(size_t(c.num_experts), 0);
    for (int64_t t = 0; t < batch * tokens; ++t) {
      if (t % L.group_size == 0) std::fill(fill.begin(), fill.end(), 0);
      for (int64_t j = 0; j < c.k; ++j) {
        if (!kept[size_t(t * c.k + j)]) continue;
        const int64_t e = chosen[size_t(t * c.k + j)];
        occupied[size_t(e * rows + t / L.group_size * L.capacity + fill[size_t(e)]++)] = t;
      }
    }
  }
  const Tensor occ = Tensor::from_vector(occupied, {c.num_experts * rows});
  Tensor buf = randn({c.num_experts, rows, dim}, RngKey{3, 3}).to(act).set_requires_grad(true);
  Tensor rb = randn({c.num_experts, rows, dim}, RngKey{3, 4}).to(act);
  auto experts_step = [&] { sum_all(experts(buf, occ) * rb).backward(); };
  // A dense MLP over all tokens with the experts' FLOPs: hidden size M * E * R / N.
  const int64_t n = batch * tokens;
  const int64_t dense_mlp = std::max<int64_t>(1, mlp * c.num_experts * rows / n);
  ParameterStore ds;
  MlpBlock dense(ds, "mlp", dim, dense_mlp, 0.0);
  ds.allocate(0);
  auto dense_step = [&] { sum_all(dense(x, ctx, 0).out * r).backward(); };

  const auto ms = interleaved_ms(backend, 3, reps, {moe_step, experts_step, dense_step});
  std::vector<double> share, ratio;
  for (int i = 0; i < reps; ++i) {
    share.push_back((ms[0][size_t(i)] - ms[1][size_t(i)]) / ms[0][size_t(i)]);
    ratio.push_back(ms[0][size_t(i)] / ms[2][size_t(i)]);
  }
  const double moe_ms = median(ms[0]), experts_ms = median(ms[1]), dense_ms = median(ms[2]);

  std::printf(
      "MoE layer fwd+bwd: %lld images x %lld tokens, D %lld, M %lld, E %lld, k %lld, "
      "capacity %.2f, %d threads (medians of %d interleaved rounds)\n",
      static_cast<long long>(batch), static_cast<long long>(tokens), static_cast<long long>(dim),
      static_cast<long long>(mlp), static_cast<long long>(c.num_experts),
      static_cast<long long>(c.k), c.capacity_factor, threads, reps);
  std::printf("  %-44s %9.2f ms\n", "MoE layer (router+dispatch+experts+combine)", moe_ms);
  std::printf("  %-44s %9.2f ms\n", "experts alone (batched MLP on [E, R, D])", experts_ms);
  std::printf("  %-44s %9.2f ms  (hidden %lld)\n", "dense MLP with the experts' FLOPs", dense_ms,
              static_cast<long long>(dense_mlp));
  // Ratios round by round (the three ran back to back), then their median.
  std::printf(
      "  share of router + dispatch + combine + aux: %.1f%% (median of rounds; %.1f%% of "
      "the medians)\n",
      100.0 * median(share), 100.0 * (moe_ms - experts_ms) / moe_ms);
  std::printf(
      "  MoE layer / dense MLP of equal FLOPs: %.2fx (median of rounds; %.2fx of the "
      "medians)\n",
      median(ratio), moe_ms / dense_ms);
  return 0;
}
