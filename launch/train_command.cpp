// `vmoe train`: the single-process training loop with logging, evaluation and saving.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/optim/optimizer.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/metrics_log.h"
#include "launch/workdir.h"
#include "parallel/weights_file.h"

namespace vmoe {

namespace {

// Averages of the MoE layers' figures over a logging window: "moe/block_01/dropped_fraction"...
class MoeWindow {
 public:
  void add(const std::vector<MoeReport>& reports) {
    for (const MoeReport& r : reports) {
      const std::string p = "moe/" + VisionTransformer::block_prefix(r.block).substr(8) + "/";
      double max_load = 0, total = 0;
      for (int64_t l : r.expert_load) {
        max_load = std::max(max_load, double(l));
        total += double(l);
      }
      const double mean_load = r.expert_load.empty() ? 0 : total / double(r.expert_load.size());
      sums_[p + "importance_loss"] += r.importance_loss;
      sums_[p + "load_loss"] += r.load_loss;
      sums_[p + "dropped_fraction"] += r.dropped_fraction;
      sums_[p + "load_max_over_mean"] += mean_load > 0 ? max_load / mean_load : 0;
    }
    ++count_;
  }
  // Adds the window's averages to `out` and starts a new window.
  void flush(std::map<std::string, double>& out) {
    for (const auto& [key, sum] : sums_)
      out[key] = sum / double(count_);
    sums_.clear();
    count_ = 0;
  }

 private:
  std::map<std::string, double> sums_;
  int64_t count_ = 0;
};

std::map<std::string, double> eval_metrics(const EvalResult& r) {
  return {
      {"eval/loss", r.loss}, {"eval/accuracy", r.accuracy}, {"eval/examples", double(r.examples)}};
}

}  // namespace

int run_train(const TrainArgs& args) {
  const config::Config cfg = config::load_config(args.config_path, args.overrides);
  prepare_workdir(args.workdir);
  const std::filesystem::path workdir = args.workdir;
  const std::string config_text = config::config_to_text(cfg);
  write_text_file(workdir / "config.textproto", config_text);
  if (cfg.train().threads() > 0) omp_set_num_threads(cfg.train().threads());

  const data::ImageDataset train_set = load_split(cfg, data::Split::train);
  const data::ImageDataset test_set = load_split(cfg, data::Split::test);

  ParameterStore params;
  VisionTransformer model(params, vit_config_from(cfg.model()));
  params.allocate(cfg.train().seed(), param_dtype_from(cfg.model()));
  std::unique_ptr<Optimizer> optimizer = optimizer_from(cfg.optimizer(), params);
  data::BatchLoader loader(train_set, loader_options_from(cfg));
  const int64_t total_steps = total_steps_from(cfg.train(), loader.steps_per_epoch());
  const LrSchedule schedule = schedule_from(cfg, total_steps);
  const LossKind loss_kind = loss_from(cfg.train());
  const StepOptions step_options{loss_kind, cfg.optimizer().grad_clip_norm(), cfg.train().seed()};
  const data::Normalization norm = normalization_from(cfg.data());
  const int64_t eval_batch = cfg.data().eval_batch_size();

  MetricsLog metrics((workdir / cfg.output().metrics_file()).string());
  const int64_t log_every = std::max<int64_t>(1, cfg.train().log_every_steps());
  Progress progress(total_steps, progress_style_from(cfg.output()), log_every);
  progress.message("vmoe train: " + cfg.name() + ", " + std::to_string(params.num_elements()) +
                   " parameters, " + std::to_string(train_set.n) + " training images, " +
                   std::to_string(total_steps) + " steps of " +
                   std::to_string(cfg.data().batch_size()) + " (" +
                   std::to_string(omp_get_max_threads()) + " threads)");

  using clock = std::chrono::steady_clock;
  const auto run_start = clock::now();
  auto window_start = clock::now();
  double window_loss = 0, window_norm = 0, window_aux = 0;
  MoeWindow moe_window;
  int64_t window_steps = 0, window_correct = 0, window_images = 0;
  for (int64_t step = 0; step < total_steps; ++step) {
    const int64_t first_example = step * cfg.data().batch_size();
    data::Batch batch = loader.next();
    StepResult r = train_step(model, params, *optimizer, schedule, batch_images(batch),
                              batch_labels(batch), step, first_example, step_options);
    if (!std::isfinite(r.loss)) {
      throw std::runtime_error(
          "training diverged: loss is " + std::to_string(r.loss) + " at step " +
          std::to_string(step + 1) +
          " (try a lower optimizer.learning_rate or optimizer.grad_clip_norm)");
    }
    window_loss += r.loss;
    window_aux += r.aux_loss;
    window_norm += r.grad_norm;
    moe_window.add(r.moe);
    window_correct += r.correct;
    window_images += batch.batch_size;
    ++window_steps;
    const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
    const double images_per_s = seconds > 0 ? double(window_images) / seconds : 0;
    progress.update(step, window_loss / double(window_steps), images_per_s);
    if ((step + 1) % log_every == 0 || step + 1 == total_steps) {
      std::map<std::string, double> line{
          {"train/loss", window_loss / double(window_steps)},
          {"train/accuracy", double(window_correct) / double(window_images)},
          {"train/lr", r.lr},
          {"train/grad_norm", window_norm / double(window_steps)},
          {"train/images_per_s", images_per_s},
          {"train/epoch", double(step + 1) / double(loader.steps_per_epoch())}};
      if (!r.moe.empty()) line["train/aux_loss"] = window_aux / double(window_steps);
      moe_window.flush(line);
      metrics.write(step + 1, line);
      window_loss = window_norm = window_aux = 0;
      window_steps = window_correct = window_images = 0;
      window_start = clock::now();
    }
    const int64_t eval_every = cfg.train().eval_every_steps();
    if (eval_every > 0 && (step + 1) % eval_every == 0 && step + 1 != total_steps) {
      EvalResult e = evaluate(model, test_set, eval_batch, norm, loss_kind);
      metrics.write(step + 1, eval_metrics(e));
      char line[128];
      std::snprintf(line, sizeof line, "step %lld: eval accuracy %.2f%%, loss %.4f",
                    static_cast<long long>(step + 1), 100 * e.accuracy, e.loss);
      progress.message(line);
      window_start = clock::now();  // evaluation time is not training throughput
    }
  }
  progress.finish();
  const double train_seconds = std::chrono::duration<double>(clock::now() - run_start).count();
  EvalResult final_eval = evaluate(model, test_set, eval_batch, norm, loss_kind);
  auto final_metrics = eval_metrics(final_eval);
  final_metrics["train/seconds"] = train_seconds;
  metrics.write(total_steps, final_metrics);
  const std::string weights_path = (workdir / cfg.output().weights_file()).string();
  save_weights(weights_path, params, config_text, total_steps);
  std::printf("test accuracy: %.2f%% (%lld images), loss %.4f, after %lld steps in %.0f s\n",
              100 * final_eval.accuracy, static_cast<long long>(final_eval.examples),
              final_eval.loss, static_cast<long long>(total_steps), train_seconds);
  std::printf("metrics: %s\nweights: %s\n", metrics.path().c_str(), weights_path.c_str());
  return 0;
}

}  // namespace vmoe
