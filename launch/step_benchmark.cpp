// Training-step and GEMM timing (launch/step_benchmark.h).
#include "launch/step_benchmark.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/flop_counter.h"
#include "core/ops.h"
#include "core/optim/adamw.h"
#include "launch/train_step.h"

namespace vmoe {

namespace {

bool is_out_of_memory(const std::exception& e) {
  return std::string(e.what()).find("out of memory") != std::string::npos;
}

double milliseconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The value at fraction q of the sorted values (nearest rank).
double quantile(const std::vector<double>& sorted, double q) {
  return sorted[std::min(sorted.size() - 1, size_t(q * double(sorted.size())))];
}

}  // namespace

std::optional<StepTiming> time_training_steps(const VitConfig& cfg, const StepBenchmarkOptions& o) {
  if (o.batch < 1 || o.steps < 1 || o.warmup < 0)
    throw std::invalid_argument("step benchmark: batch and steps must be >= 1, warmup >= 0");
  const Backend& backend = backend_for(o.device);
  try {
    ParameterStore params;
    VisionTransformer model(params, cfg);
    params.allocate(0, DType::f32, o.device);
    // A non-zero head, so that every gradient is non-trivial.
    Tensor head = params.value("head/kernel");
    initialize(head, InitSpec::normal(0.02), RngKey{1, 1});
    AdamW opt(params, AdamWOptions{.weight_decay = 1e-4});
    LrSchedule schedule{LrSchedule::Kind::constant, 1e-3};
    Tensor images = randn({o.batch, cfg.image_size, cfg.image_size, cfg.channels}, RngKey{2, 0}, 0,
                          DType::f32, o.device);
    std::vector<int32_t> labels(size_t(o.batch), 0);
    for (int64_t i = 0; i < o.batch; ++i)
      labels[size_t(i)] = int32_t(i % cfg.num_classes);
    const Tensor y = Tensor::from_vector(labels, {o.batch}, o.device);
    backend.allocator->reset_peak();

    StepTiming t;
    std::vector<double> ms;
    StepOptions options;
    options.precision = o.precision;
    options.microbatches = o.microbatches;
    for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
      std::optional<FlopCount> count;
      if (s == 0) count.emplace();
      const auto t0 = std::chrono::steady_clock::now();
      train_step(model, params, opt, schedule, images, y, s, 0, options);
      backend.synchronize();
      const double dt = milliseconds_since(t0);
      if (count) t.flops_per_step = count->flops();
      if (s >= o.warmup) ms.push_back(dt);
    }
    std::sort(ms.begin(), ms.end());
    t.median_ms = quantile(ms, 0.5);
    t.p25_ms = quantile(ms, 0.25);
    t.p75_ms = quantile(ms, 0.75);
    t.min_ms = ms.front();
    t.max_ms = ms.back();
    t.peak_bytes = backend.allocator->stats().peak_in_use_bytes;
    if (o.profile_steps > 0) {
      // After the timing: the profile's synchronisation and bookkeeping slow the steps down.
      OpProfile profile;
      for (int64_t s = 0; s < o.profile_steps; ++s) {
        train_step(model, params, opt, schedule, images, y, o.warmup + o.steps + s, 0, options);
        backend_for(o.device).synchronize();
      }
      t.profile = profile.rows();
    }
    return t;
  } catch (const std::runtime_error& e) {
    if (!is_out_of_memory(e)) throw;
    backend.synchronize();
    backend.allocator->empty_cache();
    return std::nullopt;
  }
}

double measure_gemm_rate(Device device, DType dtype, int64_t n, int reps) {
  const Backend& backend = backend_for(device);
  NoGrad no_grad;
  const Tensor a = to_dtype(randn({n, n}, RngKey{3, 1}, 0, DType::f32, device), dtype);
  const Tensor b = to_dtype(randn({n, n}, RngKey{3, 2}, 0, DType::f32, device), dtype);
  std::vector<double> ms;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Tensor c = matmul(a, b);
    backend.synchronize();
    if (r > 0) ms.push_back(milliseconds_since(t0));  // the first run warms up
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(n) * double(n) * double(n) / (quantile(ms, 0.5) * 1e-3);
}

}  // namespace vmoe
