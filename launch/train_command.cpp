// `vmoe train`: the training loop on one or many ranks (expert- and data-parallel), with
// logging, evaluation and saving.
#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "core/backend.h"
#include "core/kernel_errors.h"
#include "core/ops.h"
#include "core/optim/optimizer.h"
#include "data/image_source.h"
#include "data/threaded_loader.h"
#include "launch/checkpointing.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/init_config.h"
#include "launch/metrics_log.h"
#include "launch/workdir.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/gradient_reducer.h"
#include "parallel/init_from.h"
#include "parallel/process_groups.h"
#include "parallel/weights_file.h"

namespace vmoe {

namespace {

// The window's averaged figures as metrics: "train/loss", "moe/block_01/dropped_fraction"...
void add_window_metrics(const StepFigures& f, double images, std::map<std::string, double>& out) {
  out["train/loss"] = f.loss;
  out["train/accuracy"] = images > 0 ? f.correct / images : 0;
  out["train/grad_norm"] = f.grad_norm;
  if (f.moe.empty()) return;
  out["train/aux_loss"] = f.aux_loss;
  for (const MoeFigures& m : f.moe) {
    const std::string p = "moe/" + VisionTransformer::block_prefix(m.block).substr(8) + "/";
    out[p + "importance_loss"] = m.importance_loss;
    out[p + "load_loss"] = m.load_loss;
    out[p + "dropped_fraction"] = m.dropped_fraction;
    out[p + "load_max_over_mean"] = m.load_max_over_mean;
  }
}

std::map<std::string, double> eval_metrics(const EvalResult& r) {
  return {
      {"eval/loss", r.loss}, {"eval/accuracy", r.accuracy}, {"eval/examples", double(r.examples)}};
}

// Capacity chunks of the expert exchange. Automatic (0): on the CPU the MPI transport copies
// with the same cores that compute, so chunks only pay when the node has cores beyond the
// ranks' compute threads; otherwise one chunk (docs/parallel.md has the measurements).
int64_t exchange_chunks(const config::Config& cfg, int local_ranks) {
  const int64_t configured = cfg.model().moe().exchange_chunks();
  if (configured > 0) return configured;
  const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  const bool spare_core = omp_get_max_threads() * std::max(1, local_ranks) < cores;
  return spare_core ? 0 : 1;  // 0: by message size (ExpertParallelExchange::chunks_for)
}

// Test hook: VMOE_TEST_FAIL_AT="RANK:STEP" makes that rank throw at that step, to check that
// one rank's error ends the whole job.
void maybe_inject_failure(int rank, int64_t step) {
  const char* spec = std::getenv("VMOE_TEST_FAIL_AT");
  if (!spec) return;
  int fail_rank = -1;
  long long fail_step = -1;
  if (std::sscanf(spec, "%d:%lld", &fail_rank, &fail_step) == 2 && fail_rank == rank &&
      fail_step == step) {
    throw std::runtime_error("injected failure at step " + std::to_string(step) +
                             " (VMOE_TEST_FAIL_AT)");
  }
}

// The final weights: expert parameters gathered from their owners; written by rank 0.
void save_final_weights(const std::string& path, const ParameterStore& params,
                        const ProcessGroups& groups, const std::string& config_text, int64_t step) {
  std::vector<NamedTensor> named;
  for (const ParamInfo& info : params.infos()) {
    const Tensor& v = params.value(info.name);
    named.push_back({info.name, info.local_shape == info.shape ? v : gather_experts(groups, v)});
  }
  if (groups.is_root()) save_weights(path, named, config_text, step);
}

// The training loader: worker threads over `source`, this rank's slice, the config's
// augmentation (inception crop resizes to model.image_size; otherwise images keep their size).
data::ThreadedLoaderOptions threaded_loader_options_from(const config::Config& cfg, int rank,
                                                         int ranks) {
  const data::ThreadedLoaderOptions base = loader_options_from(cfg);
  const config::DataConfig& d = cfg.data();
  if (d.mixup_alpha() > 0 && cfg.train().loss() != config::TrainConfig::SOFTMAX_XENT) {
    throw std::runtime_error(
        "data.mixup_alpha > 0 needs train.loss SOFTMAX_XENT (soft targets "
        "with the sigmoid loss are not supported)");
  }
  data::ThreadedLoaderOptions o;
  o.batch_size = base.batch_size;
  o.shuffle = base.shuffle;
  o.seed = base.seed;
  o.drop_last = base.drop_last;
  o.rank = rank;
  o.num_ranks = ranks;
  o.num_threads = d.loader_threads();
  o.prefetch_batches = d.prefetch_batches();
  o.mixup_alpha = d.mixup_alpha();
  o.preprocess.random_flip = base.preprocess.random_flip;
  o.preprocess.crop_padding = base.preprocess.crop_padding;
  o.preprocess.normalization = base.preprocess.normalization;
  if (d.inception_crop()) {
    o.preprocess.inception_crop = true;
    o.preprocess.height = o.preprocess.width = cfg.model().image_size();
    o.preprocess.inception.area_min = d.inception_area_min();
    o.preprocess.inception.area_max = d.inception_area_max();
  } else if (d.dataset() == config::DataConfig::IMAGE_FOLDER) {
    o.preprocess = eval_preprocess_from(cfg);  // images of any size: shorter side + centre crop
    o.preprocess.random_flip = base.preprocess.random_flip;
  }
  o.on_corrupt = [](const std::string& what) {
    std::fprintf(stderr, "vmoe: warning: skipping corrupt training example %s\n", what.c_str());
  };
  return o;
}

}  // namespace

int run_train(const TrainArgs& args, const LaunchInfo& launch) {
  std::vector<std::string> overrides = args.overrides;
  if (!args.init_from.empty()) overrides.push_back("init.path=" + args.init_from);
  const config::Config cfg = config::load_config(args.config_path, overrides);
  const std::filesystem::path workdir = args.workdir;
  const std::string config_text = config::config_to_text(cfg);
  const int64_t num_experts = cfg.model().has_moe() ? cfg.model().moe().num_experts() : 0;
  const int64_t global_batch = cfg.data().batch_size();
  validate_layout(launch.world->size(), num_experts, global_batch,
                  num_experts > 0 ? moe_group_images(cfg.model().moe()) : 0);
  check_microbatches(global_batch / launch.world->size(), cfg.train().microbatches(),
                     num_experts > 0 ? moe_group_images(cfg.model().moe()) : 1);
  const Device device = rank_device(device_from(cfg.train()), launch.world->size());
  const ProcessGroups groups = make_process_groups(launch.world, num_experts, device);
  const int ranks = groups.world_size(), rank = groups.rank();
  const bool root = groups.is_root();
  if (root) {
    prepare_workdir(args.workdir);
    write_text_file(workdir / "config.textproto", config_text);
  }
  omp_set_num_threads(threads_per_rank(cfg, launch.local_ranks));

  // Training examples stream through the loader; evaluation decodes its batches on demand.
  const std::shared_ptr<data::ImageSource> train_source = open_split(cfg, data::Split::train);
  const std::shared_ptr<data::ImageSource> test_source = open_split(cfg, data::Split::test);
  const EvalBatchFn test_batches = source_eval_batches(*test_source, eval_preprocess_from(cfg));

  ParameterStore params;
  std::shared_ptr<const ExpertExchange> exchange;
  if (groups.expert->size() > 1) {
    exchange = std::make_shared<ExpertParallelExchange>(groups.expert, num_experts,
                                                        exchange_chunks(cfg, launch.local_ranks));
  }
  VisionTransformer model(params, vit_config_from(cfg.model()), exchange);
  if (ranks > 1) params.set_expert_shard(groups.expert_shard());
  params.allocate(cfg.train().seed(), param_dtype_from(cfg.model()), device);
  if (!cfg.init().path().empty()) {
    // Only a fresh run initialises from init.path: a checkpoint to resume wins (it holds the
    // run's own parameters and optimizer state).
    if (!args.from.empty() || !list_checkpoints(workdir / "checkpoints").empty()) {
      if (root) std::printf("init from %s skipped: resuming\n", cfg.init().path().c_str());
    } else {
      const std::vector<InitRule> rules = init_rules_from(cfg.init());
      const InitPlan plan = init_from_file(cfg.init().path(), rules, params);
      if (root) std::fputs(init_report(cfg.init().path(), rules, plan).c_str(), stdout);
    }
    if (root) std::fflush(stdout);
  }
  std::unique_ptr<GradientReducer> reducer;
  if (ranks > 1) {
    // Initialisation is a pure function of the seed; the broadcast guards against any rank
    // starting from something else.
    Tensor replicated = params.flat_values(Sharding::replicated);
    groups.world->broadcast(replicated, 0);
    reducer = std::make_unique<GradientReducer>(
        params, groups, int64_t(double(cfg.parallel().gradient_bucket_mb()) * (1 << 20)));
  }
  std::unique_ptr<Optimizer> optimizer = optimizer_from(cfg.optimizer(), params);
  data::ThreadedLoader loader(*train_source, threaded_loader_options_from(cfg, rank, ranks));
  const int64_t total_steps = total_steps_from(cfg.train(), loader.steps_per_epoch());
  const LrSchedule schedule = schedule_from(cfg, total_steps);
  TrainCheckpointing checkpoints(cfg, workdir / "checkpoints", groups, config_text);
  const TrainingPosition start =
      checkpoints.resume(args.from, params, *optimizer, {train_source->size(), total_steps});
  loader.set_position({start.epoch, start.index_in_epoch});
  install_stop_signals();
  const LossKind loss_kind = loss_from(cfg.train());
  const StepOptions step_options{.loss = loss_kind,
                                 .grad_clip_norm = cfg.optimizer().grad_clip_norm(),
                                 .seed = cfg.train().seed(),
                                 .reducer = reducer.get(),
                                 .precision = precision_from(cfg),
                                 .microbatches = cfg.train().microbatches()};
  const int64_t eval_batch = cfg.data().eval_batch_size();

  // Only rank 0 reports: terminal and metrics file.
  std::optional<MetricsLog> metrics;
  if (root) metrics.emplace((workdir / cfg.output().metrics_file()).string());
  const int64_t log_every = std::max<int64_t>(1, cfg.train().log_every_steps());
  Progress progress(total_steps, root ? progress_style_from(cfg.output()) : Progress::Style::none,
                    log_every);
  std::string layout = std::to_string(omp_get_max_threads()) + " threads";
  if (ranks > 1) {
    layout = std::to_string(ranks) + " ranks x " + layout + ", experts over " +
             std::to_string(groups.expert->size()) + " ranks";
  }
  progress.message("vmoe train: " + cfg.name() + ", " + std::to_string(params.num_elements()) +
                   " parameters, " + std::to_string(train_source->size()) + " training images, " +
                   std::to_string(total_steps) + " steps of " + std::to_string(global_batch) +
                   " (" + layout + ")");

  using clock = std::chrono::steady_clock;
  const auto run_start = clock::now();
  auto window_start = clock::now();
  // The steps' figures summed on the device since the last log: read back only when a step is
  // logged or saved (a step in between reads nothing from the device).
  Tensor window;
  double window_wait = 0;  // seconds spent in loader.next() during the window
  int64_t window_steps = 0, window_images = 0;
  double shown_loss = 0;  // the last logged loss, for the progress bar
  int64_t last_saved_step = start.step;
  data::Batch batch;
  for (int64_t step = start.step; step < total_steps; ++step) {
    maybe_inject_failure(rank, step);
    const int64_t first_example = step * global_batch + rank * (global_batch / ranks);
    const auto wait_start = clock::now();
    loader.next(batch);
    window_wait += std::chrono::duration<double>(clock::now() - wait_start).count();
    const Tensor soft_targets =
        batch.targets.empty()
            ? Tensor()
            : Tensor::from_vector(
                  batch.targets,
                  {batch.batch_size, int64_t(batch.targets.size()) / batch.batch_size}, device);
    StepResult r =
        train_step(model, params, *optimizer, schedule, batch_images(batch, device),
                   batch_labels(batch, device), step, first_example, step_options, soft_targets);
    if (window.defined())
      add_(window, r.figures);
    else
      window = r.figures.clone();
    window_images += global_batch;
    ++window_steps;
    const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
    const double images_per_s = seconds > 0 ? double(window_images) / seconds : 0;
    progress.update(step, shown_loss, images_per_s);
    const bool log_now = (step + 1) % log_every == 0 || step + 1 == total_steps;
    const TrainCheckpointing::Decision save = checkpoints.after_step(step + 1);
    if (log_now || save.save) {
      // The one read back of these steps: errors found by kernels, then the figures.
      check_kernel_errors(device);
      const StepFigures f = r.read(window, double(window_steps));
      if (!std::isfinite(f.loss)) {
        throw std::runtime_error(
            "training diverged: the mean loss of steps " + std::to_string(step + 2 - window_steps) +
            "-" + std::to_string(step + 1) + " is " + std::to_string(f.loss) +
            " (try a lower optimizer.learning_rate or optimizer.grad_clip_norm)");
      }
      if (log_now) {
        shown_loss = f.loss;
        std::map<std::string, double> line{
            {"train/lr", r.lr},
            {"train/images_per_s", images_per_s},
            {"train/data_wait_fraction", seconds > 0 ? window_wait / seconds : 0},
            {"train/epoch", double(step + 1) / double(loader.steps_per_epoch())}};
        add_window_metrics(f, double(window_images), line);
        if (device.type == DeviceType::cuda) {
          // The caching allocator's device memory: the peak held by tensors, and what it keeps
          // cached but unused (fragmentation across size classes).
          const AllocatorStats mem = backend_for(device).allocator->stats();
          line["device/peak_bytes"] = double(mem.peak_in_use_bytes);
          line["device/cached_bytes"] = double(mem.cached_bytes);
        }
        if (metrics) metrics->write(step + 1, line);
        window = Tensor();
        window_wait = 0;
        window_steps = window_images = 0;
        window_start = clock::now();
      }
    }
    if (save.save) {
      const data::ThreadedLoader::Position at = loader.position();
      const std::string path =
          checkpoints.save(params, *optimizer, {step + 1, at.epoch, at.index_in_epoch});
      last_saved_step = step + 1;
      if (save.stop) {
        progress.finish();
        if (root) {
          std::printf(
              "stopped by a signal after step %lld; checkpoint %s; run the same command to "
              "resume\n",
              static_cast<long long>(step + 1), path.c_str());
        }
        return 0;
      }
      progress.message("checkpoint " + path);
      window_start = clock::now();  // saving time is not training throughput
    }
    const int64_t eval_every = cfg.train().eval_every_steps();
    if (eval_every > 0 && (step + 1) % eval_every == 0 && step + 1 != total_steps) {
      EvalResult e = evaluate(model, test_source->size(), test_batches, eval_batch, loss_kind, {},
                              groups.world.get());
      if (metrics) metrics->write(step + 1, eval_metrics(e));
      char line[128];
      std::snprintf(line, sizeof line, "step %lld: eval accuracy %.2f%%, loss %.4f",
                    static_cast<long long>(step + 1), 100 * e.accuracy, e.loss);
      progress.message(line);
      window_start = clock::now();  // evaluation time is not training throughput
    }
  }
  progress.finish();
  if (checkpoints.save_at_end() && last_saved_step < total_steps) {
    const data::ThreadedLoader::Position at = loader.position();
    checkpoints.save(params, *optimizer, {total_steps, at.epoch, at.index_in_epoch});
  }
  const double train_seconds = std::chrono::duration<double>(clock::now() - run_start).count();
  EvalResult final_eval = evaluate(model, test_source->size(), test_batches, eval_batch, loss_kind,
                                   {}, groups.world.get());
  const std::string weights_path = (workdir / cfg.output().weights_file()).string();
  save_final_weights(weights_path, params, groups, config_text, total_steps);
  if (!root) return 0;
  auto final_metrics = eval_metrics(final_eval);
  final_metrics["train/seconds"] = train_seconds;
  metrics->write(total_steps, final_metrics);
  std::printf("test accuracy: %.2f%% (%lld images), loss %.4f, after %lld steps in %.0f s\n",
              100 * final_eval.accuracy, static_cast<long long>(final_eval.examples),
              final_eval.loss, static_cast<long long>(total_steps), train_seconds);
  std::printf("metrics: %s\nweights: %s\n", metrics->path().c_str(), weights_path.c_str());
  return 0;
}

}  // namespace vmoe
