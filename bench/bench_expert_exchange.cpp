// Benchmark, run under mpirun: one MoE layer's expert exchange on P ranks with 1, 2, 4, 8
// capacity chunks, forward + backward. For each chunk count:
//   exchange alone   - the all-to-alls with identity experts (no compute)
//   compute alone    - the local experts on the same chunk shapes (no communication)
//   overlapped total - the exchange with the real experts, chunks pipelined
//   hidden           - (exchange + compute - total) / min(exchange, compute)
// Each figure is the median over repetitions of the slowest rank's time.
#include <malloc.h>
#include <mpi.h>
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/cpu/blas_kernels.h"
#include "core/ops.h"
#include "models/stacked_experts.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/mpi_runtime.h"

namespace {

using namespace vmoe;

// Median over `reps` of the slowest rank's milliseconds.
double median_ms(Communicator& world, int warmup, int reps, const std::function<void()>& fn) {
  std::vector<double> ms;
  for (int i = 0; i < warmup + reps; ++i) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    double dt =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    dt = all_reduce_scalar(world, dt, ReduceOp::max);
    if (i >= warmup) ms.push_back(dt);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  int64_t experts = 8, rows = 432, dim = 256, mlp = 512;
  int threads = 1, reps = 15;
  std::vector<int64_t> chunk_counts{1, 2, 4, 8};
  CLI::App app{"vmoe expert exchange benchmark (run with mpirun)"};
  app.add_option("--experts", experts, "E");
  app.add_option("--rows", rows, "R: rows per expert of each rank's dispatch buffer");
  app.add_option("--dim", dim, "D");
  app.add_option("--mlp", mlp, "M of each expert");
  app.add_option("--threads", threads, "OpenMP threads per rank");
  app.add_option("--reps", reps);
  app.add_option("--chunks", chunk_counts, "chunk counts to measure")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  omp_set_num_threads(threads);
  try {
    MpiRuntime runtime;
    std::shared_ptr<Communicator> world = runtime.world();
    const int p = world->size();
    const int64_t local = experts / p;
    ParameterStore store;
    StackedExperts stacked(store, "experts", experts, dim, mlp, ExpertInit::independent);
    store.set_expert_shard({experts, world->rank() * local, local});
    store.allocate(1);
    LocalExperts run_experts = [&](const Tensor& x, const Tensor&) { return stacked(x); };
    LocalExperts identity = [](const Tensor& x, const Tensor&) { return x; };
    Tensor dispatched = randn({experts, rows, dim}, RngKey{3, uint64_t(world->rank())});
    Tensor weights = randn({experts, rows, dim}, RngKey{4, uint64_t(world->rank())});
    if (world->rank() == 0) {
      std::printf(
          "expert exchange, fwd+bwd, %d ranks x %d threads: E %lld, R %lld rows/expert/rank, "
          "D %lld, M %lld, f32 (%.2f MB dispatched per rank); medians of %d, ms\n",
          p, threads, static_cast<long long>(experts), static_cast<long long>(rows),
          static_cast<long long>(dim), static_cast<long long>(mlp),
          double(dispatched.numel() * 4) / 1e6, reps);
      std::printf(
          "| ranks | chunks | exchange alone | compute alone | overlapped total | "
          "sequential sum | hidden |\n|---|---|---|---|---|---|---|\n");
    }
    for (int64_t chunks : chunk_counts) {
      ExpertParallelExchange exchange(world, experts, chunks);
      // Forward, then backward seeded with a fixed output gradient.
      auto step = [&](const LocalExperts& fn) {
        store.zero_grads();
        Tensor x = dispatched.detach();
        x.set_requires_grad(true);
        run_backward(exchange(x, Tensor(), fn), weights);
      };
      const double exchange_ms = median_ms(*world, 3, reps, [&] { step(identity); });
      // The owner's compute on the same chunk shapes: [E_local, P * R / chunks, D] each.
      const double compute_ms = median_ms(*world, 3, reps, [&] {
        store.zero_grads();
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t n = rows * (c + 1) / chunks - rows * c / chunks;
          Tensor x = dispatched.slice(1, 0, n).contiguous();
          Tensor xs = x.reshape({local, p * n, dim});  // the same element count an owner gets
          xs.set_requires_grad(true);
          run_backward(stacked(xs),
                       weights.slice(1, 0, n).contiguous().reshape({local, p * n, dim}));
        }
      });
      const double total_ms = median_ms(*world, 3, reps, [&] { step(run_experts); });
      const double hidden =
          (exchange_ms + compute_ms - total_ms) / std::min(exchange_ms, compute_ms);
      if (world->rank() == 0) {
        std::printf("| %d | %lld | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n", p,
                    static_cast<long long>(chunks), exchange_ms, compute_ms, total_ms,
                    exchange_ms + compute_ms, 100 * hidden);
      }
    }
  } catch (const std::exception& e) {
    abort_job(e.what());
  }
  return 0;
}
