// `vmoe bench train`: training steps of a config on random data (no loader), as `vmoe train`
// runs them (its device, precision, micro-batches, recomputation and threads), timed after a
// warm-up; with the model's FLOPs per step, the achieved rate, and that rate as a fraction of a
// GEMM rate the same command measures on the same device (docs/benchmarks.md).
#include <omp.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "configs/config.h"
#include "launch/commands.h"
#include "launch/experiment.h"
#include "launch/profile_report.h"
#include "launch/step_benchmark.h"

namespace vmoe {

int run_bench_train(const BenchArgs& args) {
  const config::Config cfg = config::load_config(args.config_path, args.overrides);
  const int threads = threads_per_rank(cfg, 1);
  omp_set_num_threads(threads);
  StepBenchmarkOptions o;
  o.device = device_from(cfg.train());
  o.precision = precision_from(cfg);
  o.batch = args.batch > 0 ? args.batch : cfg.data().batch_size();
  o.microbatches = cfg.train().microbatches();
  o.warmup = args.warmup;
  o.steps = args.steps;
  o.profile_steps = args.profile_steps;
  const std::optional<StepTiming> t = time_training_steps(vit_config_from(cfg.model()), o);
  if (!t) {
    throw std::runtime_error("a batch of " + std::to_string(o.batch) + " images does not fit in " +
                             o.device.str() + " memory (try --batch or model.recompute)");
  }
  // The GEMM the step is compared with: bf16 where the device has tensor cores for it (mixed
  // precision on a GPU), else f32 (the CPU computes bf16 in f32).
  const DType gemm_dtype = o.precision == Precision::bf16 && o.device.type == DeviceType::cuda
                               ? DType::bf16
                               : DType::f32;
  const double gemm_rate = measure_gemm_rate(o.device, gemm_dtype, args.gemm_size, 5);
  const double step_rate = double(t->flops_per_step) / (t->median_ms * 1e-3);
  const double images_per_s = double(o.batch) * 1000.0 / t->median_ms;

  nlohmann::json j;
  j["config"] = cfg.name();
  j["device"] = o.device.str();
  j["threads"] = threads;
  j["precision"] = precision_name(o.precision);
  j["batch"] = o.batch;
  j["microbatches"] = o.microbatches;
  j["steps"] = o.steps;
  j["warmup"] = o.warmup;
  j["step_ms"] = {{"median", t->median_ms},
                  {"p25", t->p25_ms},
                  {"p75", t->p75_ms},
                  {"min", t->min_ms},
                  {"max", t->max_ms}};
  j["images_per_s"] = images_per_s;
  j["flops_per_step"] = t->flops_per_step;
  j["gflops_per_s"] = step_rate / 1e9;
  j["gemm"] = {
      {"n", args.gemm_size}, {"dtype", dtype_name(gemm_dtype)}, {"gflops_per_s", gemm_rate / 1e9}};
  j["fraction_of_gemm"] = step_rate / gemm_rate;
  j["peak_device_bytes"] = t->peak_bytes;
  if (o.profile_steps > 0) j["profile"] = profile_json(t->profile, o.profile_steps);
  if (args.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s on %s, %d thread(s), %s, batch %lld (%lld micro-batch(es)), %lld steps\n",
              cfg.name().c_str(), o.device.str().c_str(), threads, precision_name(o.precision),
              static_cast<long long>(o.batch), static_cast<long long>(o.microbatches),
              static_cast<long long>(o.steps));
  std::printf("step: median %.2f ms (quartiles %.2f - %.2f, min %.2f, max %.2f)\n", t->median_ms,
              t->p25_ms, t->p75_ms, t->min_ms, t->max_ms);
  std::printf(
      "%.1f images/s, %.3g FLOPs per step, %.1f GFLOP/s = %.1f%% of the %s GEMM rate "
      "(%.1f GFLOP/s at n = %lld)\n",
      images_per_s, double(t->flops_per_step), step_rate / 1e9, 100 * step_rate / gemm_rate,
      dtype_name(gemm_dtype), gemm_rate / 1e9, static_cast<long long>(args.gemm_size));
  std::printf("peak device memory: %.1f MiB\n", double(t->peak_bytes) / double(1 << 20));
  if (o.profile_steps > 0) std::printf("\n%s", profile_text(t->profile, o.profile_steps).c_str());
  return 0;
}

}  // namespace vmoe
