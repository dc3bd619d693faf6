// Timing of training steps on random data (no loader): what `vmoe bench train` and
// bench/bench_train_step measure. A step is launch/train_step.h's, so the benchmark times the
// work `vmoe train` does per step; FLOPs are the op layer's count (core/flop_counter.h).
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/op_profile.h"
#include "models/precision.h"
#include "models/vit_config.h"

namespace vmoe {

struct StepTiming {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  double p25_ms = 0, p75_ms = 0;  // the spread: quartiles of the timed steps
  int64_t flops_per_step = 0;     // model FLOPs of one step, forward and backward
  int64_t peak_bytes = 0;         // the device allocator's peak in use over the run
  // Totals over the profiled steps (StepBenchmarkOptions::profile_steps; core/op_profile.h).
  std::vector<ProfileRow> profile;
};

struct StepBenchmarkOptions {
  Device device = kCpu;
  Precision precision = Precision::f32;
  int64_t batch = 128;
  int64_t microbatches = 1;
  int64_t warmup = 3;
  int64_t steps = 10;
  int64_t profile_steps = 0;  // run after the timed ones, every kernel timed
};

// Builds `cfg` (random weights, a non-zero head), runs `warmup` then `steps` AdamW training
// steps on random images, then `profile_steps` profiled ones; nullopt when a step runs out of
// device memory (the cache is emptied).
std::optional<StepTiming> time_training_steps(const VitConfig& cfg,
                                              const StepBenchmarkOptions& options);

// The median rate in FLOP/s of an [n, n] x [n, n] product in `dtype` on `device` over `reps`
// runs after one warm-up: the machine's GEMM rate the step's rate is compared with.
double measure_gemm_rate(Device device, DType dtype, int64_t n, int reps);

}  // namespace vmoe
