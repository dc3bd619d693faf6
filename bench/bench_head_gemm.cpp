// Benchmark: one attention head's small products (core/cpu/head_gemm.h) through each kernel this
// CPU runs (BLAS, AVX2, AVX-512), at the fused attention's shapes: P V and dS K ([N, Dh] = [N, N]
// [N, Dh]), q k^T (the right side transposed, so repacked), and a plain [N, N] = [N, Dh] [Dh, N].
// Prints the median and fastest time per call over rounds of --calls calls, and each kernel's
// ratio to BLAS.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/cpu/blas_kernels.h"
#include "core/cpu/head_gemm.h"

namespace {

using vmoe::cpu::HeadKernel;
using vmoe::cpu::MatView;

struct Shape {
  int64_t m, n, k;
  bool transposed_b;
  const char* name;
};

// Median and fastest microseconds per call of `calls` products, over `rounds` rounds.
std::pair<double, double> time_kernel(HeadKernel kernel, const Shape& s, int64_t ld, int calls,
                                      int rounds, const std::vector<float>& a,
                                      const std::vector<float>& b, std::vector<float>& c) {
  std::vector<float> pack;
  const MatView<float> av{a.data(), ld, 1};
  const MatView<float> bv =
      s.transposed_b ? MatView<float>{b.data(), 1, ld} : MatView<float>{b.data(), ld, 1};
  std::vector<double> us;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i)
      vmoe::cpu::head_product_on<float>(kernel, s.m, s.n, s.k, av, bv, c.data(), ld, pack);
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front()};
}

}  // namespace

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  int64_t tokens = 50, head_dim = 16;
  int calls = 20000, rounds = 7;
  CLI::App app{"vmoe attention-head product benchmark (one thread)"};
  app.add_option("--tokens", tokens, "N, the sequence length");
  app.add_option("--head-dim", head_dim, "Dh");
  app.add_option("--calls", calls, "products per round");
  app.add_option("--rounds", rounds);
  CLI11_PARSE(app, argc, argv);
  const int64_t n = tokens, dh = head_dim, ld = std::max(n, dh);
  const Shape shapes[] = {{n, dh, n, false, "P V, dS K    [N, Dh] = [N, N] [N, Dh]"},
                          {n, n, dh, true, "q k^T, dO V^T [N, N] = [N, Dh] [Dh, N]^T"},
                          {n, n, dh, false, "plain        [N, N] = [N, Dh] [Dh, N]"}};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(size_t(ld * ld)), b(size_t(ld * ld)), c(size_t(ld * ld));
  for (float& x : a)
    x = dist(rng);
  for (float& x : b)
    x = dist(rng);
  std::printf("N %lld, Dh %lld, %d calls x %d rounds, OpenBLAS %s kernels\n", (long long)n,
              (long long)dh, calls, rounds, vmoe::cpu::openblas_core().c_str());
  const char* names[] = {"blas", "avx2", "avx512"};
  for (const Shape& s : shapes) {
    double blas_us = 0;
    for (HeadKernel kernel : {HeadKernel::blas, HeadKernel::avx2, HeadKernel::avx512}) {
      if (!vmoe::cpu::head_kernel_available(kernel)) continue;
      const auto [median, fastest] = time_kernel(kernel, s, ld, calls, rounds, a, b, c);
      if (kernel == HeadKernel::blas) blas_us = median;
      std::printf("%s  %-6s median %6.2f us  fastest %6.2f us  x%.2f of blas\n", s.name,
                  names[int(kernel)], median, fastest, median / blas_us);
    }
  }
  return 0;
}
