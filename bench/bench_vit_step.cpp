// Benchmark: one training step (forward, softmax cross-entropy, backward, AdamW) of a ViT on
// random data, with the same arguments as bench/ref/train_step_torch.py. Prints one JSON line.
#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/optim/adamw.h"
#include "launch/train_step.h"

int main(int argc, char** argv) {
  using namespace vmoe;
  VitConfig cfg;
  int64_t batch = 128, steps = 20, warmup = 3;
  int threads = 1;
  CLI::App app{"vmoe ViT training-step benchmark"};
  app.add_option("--image-size", cfg.image_size);
  app.add_option("--channels", cfg.channels);
  app.add_option("--patch", cfg.patch_size);
  app.add_option("--hidden", cfg.hidden_size);
  app.add_option("--mlp", cfg.mlp_dim);
  app.add_option("--heads", cfg.num_heads);
  app.add_option("--layers", cfg.num_layers);
  app.add_option("--classes", cfg.num_classes);
  app.add_option("--batch", batch);
  app.add_option("--threads", threads);
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  CLI11_PARSE(app, argc, argv);
  // As in the vmoe binary: reuse freed activation memory instead of page-faulting it back.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  omp_set_num_threads(threads);

  ParameterStore params;
  VisionTransformer model(params, cfg);
  params.allocate(0);
  // Non-zero head so that every gradient is non-trivial.
  Tensor head = params.value("head/kernel");
  initialize(head, InitSpec::normal(0.02), RngKey{1, 1});
  AdamW opt(params, AdamWOptions{.weight_decay = 1e-4});
  LrSchedule sched{LrSchedule::Kind::constant, 1e-3};
  Tensor images = randn({batch, cfg.image_size, cfg.image_size, cfg.channels}, RngKey{2, 0});
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i)
    labels[size_t(i)] = int32_t(i % cfg.num_classes);
  Tensor y = Tensor::from_vector(labels, {batch});

  std::vector<double> ms;
  for (int64_t s = 0; s < warmup + steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    train_step(model, params, opt, sched, images, y, s, 0, StepOptions{});
    double dt =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) ms.push_back(dt);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf(
      "{\"impl\":\"vmoe\",\"median_step_ms\":%.3f,\"images_per_s\":%.1f,\"threads\":%d,"
      "\"batch\":%lld,\"params\":%lld}\n",
      median, double(batch) * 1000.0 / median, threads, static_cast<long long>(batch),
      static_cast<long long>(params.num_elements()));
  return 0;
}
