// Checkpoint policy of `vmoe train`: resuming from the newest loadable checkpoint (falling back
// past damaged ones), saving every N steps / M minutes / at the end, and preemption: SIGTERM or
// SIGUSR1 asks the run to finish its step, save and exit 0. Decisions are agreed by all ranks,
// so every rank saves and stops at the same step.
#pragma once
#include <chrono>
#include <filesystem>
#include <string>

#include "configs/config.h"
#include "core/optim/optimizer.h"
#include "parallel/checkpoint.h"
#include "parallel/process_groups.h"

namespace vmoe {

// Installs the SIGTERM / SIGUSR1 handlers (they only set a flag).
void install_stop_signals();

// What a resumed checkpoint's position must fit; 0 = unknown (not checked).
struct ResumeBounds {
  int64_t examples_per_epoch = 0;  // the training split's size: index_in_epoch <= this
  int64_t total_steps = 0;         // the run's length: a later step is noted, not refused
};

class TrainCheckpointing {
 public:
  TrainCheckpointing(const config::Config& cfg, std::filesystem::path dir,
                     const ProcessGroups& groups, std::string config_text);

  // Loads `from`, or else the newest checkpoint of the directory that loads, into params and
  // optimizer; a damaged one is skipped with a warning naming it. A checkpoint that does not
  // fit the run (another optimizer, dtype or shape, a negative position, index_in_epoch beyond
  // `bounds.examples_per_epoch`) is refused with an error naming the file and the field.
  // Returns the position to continue from (step 0 when there is nothing to resume). Collective.
  TrainingPosition resume(const std::string& from, ParameterStore& params, Optimizer& optimizer,
                          const ResumeBounds& bounds = {});

  struct Decision {
    bool save = false;
    bool stop = false;  // a stop signal arrived: save, then end the run
  };
  // After `steps_done` updates. Collective when decisions need agreement.
  Decision after_step(int64_t steps_done);
  // Saves (collective) and returns the file.
  std::string save(const ParameterStore& params, const Optimizer& optimizer,
                   const TrainingPosition& position);
  bool save_at_end() const { return cfg_.at_end(); }

 private:
  config::CheckpointConfig cfg_;
  std::filesystem::path dir_;
  const ProcessGroups* groups_;
  std::string config_text_, optimizer_name_;
  uint64_t seed_;
  std::chrono::steady_clock::time_point last_save_;
};

}  // namespace vmoe
