// The vmoe binary: subcommands train and eval. Every error ends as one line on stderr and
// exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "launch/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"vmoe: Vision Mixture-of-Experts training"};
  app.require_subcommand(1);

  vmoe::TrainArgs train;
  CLI::App* train_cmd = app.add_subcommand("train", "Train a model from a config");
  train_cmd->add_option("--config", train.config_path, "Config file (textproto)")->required();
  train_cmd->add_option("--workdir", train.workdir, "Run directory")->required();
  train_cmd->add_option("--set", train.overrides, "Override a config field: path.to.field=value")
      ->take_all();

  vmoe::EvalArgs eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Evaluate saved weights on the test split");
  eval_cmd->add_option("--workdir", eval.workdir, "Run directory of `vmoe train`");
  eval_cmd->add_option("--weights", eval.weights, "Weights file (uses its stored config)");
  eval_cmd->add_option("--set", eval.overrides, "Override a config field: path.to.field=value")
      ->take_all();

  CLI11_PARSE(app, argc, argv);
  try {
    if (train_cmd->parsed()) return vmoe::run_train(train);
    if (eval_cmd->parsed()) return vmoe::run_eval(eval);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "vmoe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
