// Benchmark: training steps (forward, loss, backward, AdamW) of a ViT or V-MoE of any shape on
// random data, on any device. Reports the median step time, images/s, the model's FLOPs per step
// as the op layer counts them (every GEMM, forward and backward, at the capacity the model
// computes) and the achieved FLOP rate, and the device's peak memory. With --batch 0 it looks
// for the largest batch that fits: halving from --max-batch until a step runs. One JSON line.
#include <malloc.h>
#include <omp.h>

#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "core/cpu/blas_kernels.h"
#include "launch/step_benchmark.h"
#include "models/vision_transformer.h"

using namespace vmoe;

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  VitConfig cfg;
  MoeConfig moe;
  int64_t batch = 128, max_batch = 1024, steps = 10, warmup = 3, moe_every = 2, microbatches = 1;
  bool recompute = false;
  int threads = 1;
  std::string device_name = "cpu", precision_name_text = "f32";
  CLI::App app{"vmoe training-step benchmark"};
  app.add_option("--image-size", cfg.image_size);
  app.add_option("--channels", cfg.channels);
  app.add_option("--patch", cfg.patch_size);
  app.add_option("--hidden", cfg.hidden_size);
  app.add_option("--mlp", cfg.mlp_dim);
  app.add_option("--heads", cfg.num_heads);
  app.add_option("--layers", cfg.num_layers);
  app.add_option("--classes", cfg.num_classes);
  int64_t experts = 0;
  app.add_option("--experts", experts, "experts per MoE layer; 0 = a dense ViT");
  app.add_option("--k", moe.k);
  app.add_option("--capacity", moe.capacity_factor);
  app.add_option("--moe-every", moe_every, "an MoE layer every n blocks (the paper's Every-n)");
  app.add_option("--images-per-group", moe.images_per_group);
  app.add_option("--batch", batch, "images per step; 0 = the largest that fits");
  app.add_option("--max-batch", max_batch, "where the search for --batch 0 starts");
  app.add_option("--microbatches", microbatches, "gradient accumulation: micro-batches per step");
  app.add_flag("--recompute", recompute, "re-run each encoder block in backward (BLOCKS)");
  app.add_option("--device", device_name, "cpu, cuda, cuda:N");
  app.add_option("--precision", precision_name_text, "f32 or bf16 (mixed precision)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--threads", threads);
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  CLI11_PARSE(app, argc, argv);
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  omp_set_num_threads(threads);
  try {
    const Device device = parse_device(device_name);
    const Precision precision = precision_name_text == "bf16" ? Precision::bf16 : Precision::f32;
    if (recompute) cfg.recompute = VitConfig::Recompute::blocks;
    if (experts > 0) {
      moe.num_experts = experts;
      moe.moe_blocks = every_n_blocks(cfg.num_layers, moe_every);
      validate(moe, cfg.num_layers);
      cfg.moe = moe;
    }
    StepBenchmarkOptions options{.device = device,
                                 .precision = precision,
                                 .batch = batch,
                                 .microbatches = microbatches,
                                 .warmup = warmup,
                                 .steps = steps};
    std::optional<StepTiming> m;
    if (batch > 0) {
      m = time_training_steps(cfg, options);
      if (!m) throw std::runtime_error("batch " + std::to_string(batch) + " does not fit");
    } else {
      for (batch = max_batch; batch >= 1 && !m; batch /= 2) {
        options.batch = batch;
        m = time_training_steps(cfg, options);
      }
      batch *= 2;  // the loop halved once more after the batch that fitted
      if (!m) throw std::runtime_error("not even one image per step fits");
    }
    const double tflops = double(m->flops_per_step) / (m->median_ms * 1e-3) / 1e12;
    std::printf(
        "{\"impl\":\"vmoe\",\"device\":\"%s\",\"batch\":%lld,\"median_step_ms\":%.3f,"
        "\"min_step_ms\":%.3f,\"max_step_ms\":%.3f,\"images_per_s\":%.1f,"
        "\"flops_per_step\":%lld,\"achieved_tflops\":%.3f,\"peak_device_bytes\":%lld,"
        "\"threads\":%d,\"precision\":\"%s\",\"microbatches\":%lld,\"recompute\":%s}\n",
        device.str().c_str(), static_cast<long long>(batch), m->median_ms, m->min_ms, m->max_ms,
        double(batch) * 1000.0 / m->median_ms, static_cast<long long>(m->flops_per_step), tflops,
        static_cast<long long>(m->peak_bytes), threads, precision_name(precision),
        static_cast<long long>(microbatches), recompute ? "true" : "false");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
