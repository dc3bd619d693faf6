// Benchmark: the rate of one device's GEMM (the backend's own entry, as the model calls it) for
// one dtype and shape: the reference against which step benchmarks state their FLOP
// utilisation. bf16 runs bf16 inputs with f32 accumulation and a bf16 result. One JSON line.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/backend.h"
#include "core/cpu/blas_kernels.h"
#include "core/ops.h"

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  using namespace vmoe;
  int64_t m = 4096, n = 4096, k = 4096, reps = 20, warmup = 3;
  int threads = 1;
  bool trans_a = false, trans_b = false;
  std::string device_name = "cpu", dtype_name_text = "f32";
  CLI::App app{"vmoe GEMM rate benchmark"};
  app.add_option("--m", m);
  app.add_option("--n", n);
  app.add_option("--k", k);
  app.add_option("--dtype", dtype_name_text, "f32, bf16 or f64");
  app.add_option("--device", device_name, "cpu, cuda, cuda:N");
  app.add_option("--threads", threads);
  app.add_flag("--trans-a", trans_a, "A stored [k, m] (the weight gradient's X^T dY)");
  app.add_flag("--trans-b", trans_b, "B stored [n, k] (the input gradient's dY W^T)");
  app.add_option("--reps", reps);
  app.add_option("--warmup", warmup);
  CLI11_PARSE(app, argc, argv);
  omp_set_num_threads(threads);
  try {
    const Device device = parse_device(device_name);
    const DType dtype = parse_dtype(dtype_name_text);
    const Backend& backend = backend_for(device);
    require_entry(backend, Entry::gemm, dtype);
    const Tensor a =
        randn(trans_a ? Shape{k, m} : Shape{m, k}, RngKey{1, 1}, 0, DType::f32, device).to(dtype);
    const Tensor b =
        randn(trans_b ? Shape{n, k} : Shape{k, n}, RngKey{1, 2}, 0, DType::f32, device).to(dtype);
    const Tensor c = Tensor::empty({m, n}, dtype, device);
    GemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a.device_raw();
    g.b = b.device_raw();
    g.c = c.device_raw();
    g.trans_a = trans_a;
    g.trans_b = trans_b;
    g.lda = trans_a ? m : k;
    g.ldb = trans_b ? k : n;
    g.ldc = n;
    g.dtype = dtype;
    std::vector<double> ms;
    for (int64_t r = 0; r < warmup + reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      backend.gemm(g);
      backend.synchronize();
      const double dt =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r >= warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf(
        "{\"device\":\"%s\",\"dtype\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,"
        "\"trans_a\":%d,\"trans_b\":%d,\"median_ms\":%.4f,\"tflops\":%.3f,\"threads\":%d}\n",
        device.str().c_str(), dtype_name(dtype), static_cast<long long>(m),
        static_cast<long long>(n), static_cast<long long>(k), int(trans_a), int(trans_b), median,
        2.0 * double(m) * double(n) * double(k) / (median * 1e-3) / 1e12, threads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gemm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
