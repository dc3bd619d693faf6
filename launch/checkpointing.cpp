// Resume, periodic saves and preemption for `vmoe train`.
#include "launch/checkpointing.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "hdf5/hdf5_handle.h"

namespace vmoe {

namespace {

std::atomic<bool> g_stop_requested{false};

extern "C" void on_stop_signal(int) {
  g_stop_requested.store(true);
}

}  // namespace

void install_stop_signals() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
}

TrainCheckpointing::TrainCheckpointing(const config::Config& cfg, std::filesystem::path dir,
                                       const ProcessGroups& groups, std::string config_text)
    : cfg_(cfg.checkpoint()),
      dir_(std::move(dir)),
      groups_(&groups),
      config_text_(std::move(config_text)),
      optimizer_name_(cfg.optimizer().kind() == config::OptimizerConfig::SGD ? "sgd" : "adamw"),
      seed_(cfg.train().seed()),
      last_save_(std::chrono::steady_clock::now()) {}

TrainingPosition TrainCheckpointing::resume(const std::string& from, ParameterStore& params,
                                            Optimizer& optimizer, const ResumeBounds& bounds) {
  const std::vector<std::string> candidates =
      from.empty() ? list_checkpoints(dir_) : std::vector<std::string>{from};
  for (const std::string& path : candidates) {
    CheckpointInfo info;
    std::string damage;
    try {
      info = load_checkpoint(path, params, optimizer);
      if (info.optimizer != optimizer_name_) {
        throw std::runtime_error("checkpoint '" + path + "' holds " + info.optimizer +
                                 " state but the config trains with " + optimizer_name_ +
                                 " (optimizer.kind)");
      }
      if (bounds.examples_per_epoch > 0 &&
          info.position.index_in_epoch > bounds.examples_per_epoch) {
        throw std::runtime_error(
            "checkpoint '" + path + "': attribute 'index_in_epoch' is " +
            std::to_string(info.position.index_in_epoch) + ", beyond the " +
            std::to_string(bounds.examples_per_epoch) +
            " examples of an epoch of the training data (is it another dataset?)");
      }
    } catch (const Hdf5Error& e) {
      damage = e.what();  // unreadable, truncated or failing a checksum
    }
    // Every rank must take the same checkpoint: any rank's damage rejects it for all.
    const int64_t bad = all_reduce_scalar(*groups_->world, int64_t(!damage.empty()), ReduceOp::max);
    if (bad == 0) {
      if (groups_->is_root()) {
        std::printf("resuming from %s (step %lld)\n", path.c_str(),
                    static_cast<long long>(info.position.step));
        if (bounds.total_steps > 0 && info.position.step >= bounds.total_steps) {
          std::printf(
              "note: the checkpoint is at step %lld, the run has %lld steps: nothing "
              "left to train\n",
              static_cast<long long>(info.position.step),
              static_cast<long long>(bounds.total_steps));
        }
        std::fflush(stdout);
      }
      return info.position;
    }
    if (!from.empty()) {
      throw std::runtime_error("checkpoint '" + path +
                               "' is damaged: " + (damage.empty() ? "on another rank" : damage));
    }
    if (groups_->is_root()) {
      std::fprintf(stderr, "vmoe: warning: checkpoint '%s' is damaged (%s); trying an older one\n",
                   path.c_str(), damage.empty() ? "on another rank" : damage.c_str());
    }
  }
  if (!candidates.empty()) {
    throw std::runtime_error("no loadable checkpoint in '" + dir_.string() +
                             "' (all damaged); move them away to start from scratch");
  }
  return {};
}

TrainCheckpointing::Decision TrainCheckpointing::after_step(int64_t steps_done) {
  Decision d;
  d.save = cfg_.every_steps() > 0 && steps_done % cfg_.every_steps() == 0;
  const bool timed = cfg_.every_minutes() > 0;
  int64_t flags = 0;  // bit 0: stop requested, bit 1: time for a save
  if (g_stop_requested.load()) flags |= 1;
  if (timed &&
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_).count() >=
          60.0 * cfg_.every_minutes()) {
    flags |= 2;
  }
  // Signals reach ranks at different moments and clocks differ: agree before acting.
  if (groups_->world_size() > 1) {
    Tensor votes = Tensor::from_vector(std::vector<int64_t>{flags & 1, flags & 2}, {2}, kCpu);
    groups_->world->all_reduce(votes, ReduceOp::max);
    const std::vector<int64_t> v = votes.to_vector<int64_t>();
    flags = v[0] | v[1];
  }
  d.stop = flags & 1;
  d.save = d.save || d.stop || (flags & 2);
  return d;
}

std::string TrainCheckpointing::save(const ParameterStore& params, const Optimizer& optimizer,
                                     const TrainingPosition& position) {
  CheckpointInfo info;
  info.position = position;
  info.optimizer_steps = optimizer.steps();
  info.seed = seed_;
  info.config_text = config_text_;
  info.optimizer = optimizer_name_;
  const std::string path =
      save_checkpoint(dir_, params, optimizer, optimizer_name_, *groups_, info, cfg_.keep());
  last_save_ = std::chrono::steady_clock::now();
  return path;
}

}  // namespace vmoe
