// The vmoe binary: subcommands train, eval, predict, ckpt, plot, routing-map, data, plan,
// bench, upcycle and info.
// Started by mpirun / srun it joins the MPI job; started plainly it runs as one process. Every
// error ends as one line "vmoe: error: ..." on stderr and exit code 1 (command-line errors and
// running out of memory included); in a multi-rank job the failing rank's message, printed once,
// ends the whole job.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "core/cpu/blas_kernels.h"
#include "core/error_text.h"
#include "launch/commands.h"
#include "parallel/mpi_runtime.h"

int main(int argc, char** argv) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);  // returns unless OpenBLAS needs a restart
  // Activations of every step are large, short-lived buffers: keep freed memory in the heap
  // instead of returning it to the OS, so that each step does not page-fault it back in.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"vmoe: Vision Mixture-of-Experts training"};
  app.require_subcommand(1);

  vmoe::TrainArgs train;
  CLI::App* train_cmd = app.add_subcommand("train", "Train a model from a config");
  train_cmd->add_option("--config", train.config_path, "Config file (textproto)")->required();
  train_cmd->add_option("--workdir", train.workdir, "Run directory")->required();
  train_cmd->add_option("--set", train.overrides, "Override a config field: path.to.field=value")
      ->take_all();
  train_cmd->add_option("--from", train.from,
                        "Resume from this checkpoint (default: the workdir's newest complete one)");
  train_cmd->add_option("--init-from", train.init_from,
                        "A fresh run starts from this weights file or checkpoint (init.path)");

  vmoe::EvalArgs eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Evaluate saved weights on the test split");
  eval_cmd->add_option("--workdir", eval.workdir, "Run directory of `vmoe train`");
  eval_cmd->add_option("--weights", eval.weights, "Weights file (uses its stored config)");
  eval_cmd->add_option("--set", eval.overrides, "Override a config field: path.to.field=value")
      ->take_all();
  eval_cmd->add_option("--capacity-factor", eval.capacity_factor,
                       "Test-time expert capacity factor (V-MoE)");
  eval_cmd->add_option("--bpr", eval.bpr, "Batch Prioritized Routing at test time: on|off")
      ->check(CLI::IsMember({"on", "off"}));
  eval_cmd
      ->add_option("--capacity-sweep", eval.capacity_sweep,
                   "Comma-separated capacities; vanilla and BPR at each, CSV in the workdir")
      ->delimiter(',');
  CLI::Option* fewshot_option =
      eval_cmd
          ->add_option(
              "--fewshot", eval.fewshot,
              "Comma-separated shot counts; few-shot linear evaluation, CSV in the workdir")
          ->delimiter(',');
  eval_cmd->add_option("--fewshot-seed", eval.fewshot_seed,
                       "Seed of the permutation the few-shot examples are drawn from");
  eval_cmd
      ->add_option("--fewshot-features", eval.fewshot_features,
                   "HDF5 file to write the drawn train examples' pre-logits to (--fewshot)")
      ->needs(fewshot_option);

  vmoe::PredictArgs predict;
  CLI::App* predict_cmd =
      app.add_subcommand("predict", "Write logits, pre-logits and MoE routing of images to HDF5");
  predict_cmd->add_option("--workdir", predict.workdir, "Run directory of `vmoe train`");
  predict_cmd->add_option("--weights", predict.weights, "Weights file (uses its stored config)");
  predict_cmd->add_option("--input", predict.input,
                          "HDF5 file with `images` uint8 [N, H, W, C], or 'test' (default)");
  predict_cmd->add_option("--start", predict.start, "First input image");
  predict_cmd->add_option("--count", predict.count, "Number of images (0 = all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  predict_cmd
      ->add_option("--batch-size", predict.batch_size,
                   "Images per forward pass (0 = data.eval_batch_size; at most 1048576)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  predict_cmd->add_option("--output", predict.output, "HDF5 file to write")->required();
  predict_cmd->add_option("--capacity-factor", predict.capacity_factor,
                          "Test-time expert capacity factor (V-MoE)");
  predict_cmd->add_option("--bpr", predict.bpr, "Batch Prioritized Routing at test time: on|off")
      ->check(CLI::IsMember({"on", "off"}));
  predict_cmd->add_option("--set", predict.overrides, "Override a config field")->take_all();

  vmoe::CkptArgs ckpt;
  CLI::App* ckpt_cmd =
      app.add_subcommand("ckpt", "Inspect, verify, compare and export checkpoint files");
  ckpt_cmd->require_subcommand(1);
  CLI::App* ckpt_ls =
      ckpt_cmd->add_subcommand("ls", "Metadata and every tensor: shape, dtype, bytes, sharding");
  ckpt_ls->add_option("file", ckpt.file, "Checkpoint file")->required();
  CLI::App* ckpt_verify = ckpt_cmd->add_subcommand(
      "verify", "Read every tensor (checksums) and check the metadata; exit 1 on any fault");
  ckpt_verify->add_option("file", ckpt.file, "Checkpoint file")->required();
  CLI::App* ckpt_diff =
      ckpt_cmd->add_subcommand("diff", "Per-tensor max abs / relative difference of A and B");
  ckpt_diff->add_option("a", ckpt.file, "Checkpoint A")->required();
  ckpt_diff->add_option("b", ckpt.other, "Checkpoint B")->required();
  CLI::App* ckpt_stats =
      ckpt_cmd->add_subcommand("stats", "Per-tensor norm, mean, std, max |x|; per-expert norms");
  ckpt_stats->add_option("file", ckpt.file, "Checkpoint file")->required();
  CLI::App* ckpt_export = ckpt_cmd->add_subcommand(
      "export", "Write a weights file for `vmoe eval --weights` (with optimizer state)");
  ckpt_export->add_option("file", ckpt.file, "Checkpoint file")->required();
  ckpt_export->add_option("out", ckpt.other, "Weights file to write")->required();
  ckpt_export->add_option("--include", ckpt.include,
                          "Keep tensors whose name (without params/) matches this regex");
  ckpt_export->add_flag("--no-optimizer", ckpt.no_optimizer, "Leave out the optimizer state");

  vmoe::PlotArgs plot;
  CLI::App* plot_cmd = app.add_subcommand(
      "plot", "Training curves (and the capacity sweep) of a workdir as PNGs in WORKDIR/plots");
  plot_cmd->add_option("workdir", plot.workdir, "Run directory of `vmoe train`")->required();

  vmoe::RoutingMapArgs routing_map;
  CLI::App* routing_map_cmd = app.add_subcommand(
      "routing-map", "PNG of the expert each patch of some test images goes to, per MoE layer");
  routing_map_cmd->add_option("--workdir", routing_map.workdir, "Run directory of `vmoe train`");
  routing_map_cmd->add_option("--weights", routing_map.weights,
                              "Weights file (uses its stored config)");
  routing_map_cmd->add_option("--images", routing_map.images, "Comma-separated test images")
      ->delimiter(',');
  routing_map_cmd->add_option("--output", routing_map.output,
                              "PNG to write (default: routing_map.png in the workdir)");
  routing_map_cmd->add_option("--data", routing_map.data,
                              "Also write the first-choice experts as CSV to this file");
  routing_map_cmd->add_option("--capacity-factor", routing_map.capacity_factor,
                              "Test-time expert capacity factor");
  routing_map_cmd->add_option("--bpr", routing_map.bpr, "Batch Prioritized Routing: on|off")
      ->check(CLI::IsMember({"on", "off"}));
  routing_map_cmd->add_option("--set", routing_map.overrides, "Override a config field")
      ->take_all();

  vmoe::DataArgs data_args;
  CLI::App* data_cmd =
      app.add_subcommand("data", "Pack datasets into HDF5 shards and inspect datasets");
  data_cmd->require_subcommand(1);
  CLI::App* data_pack = data_cmd->add_subcommand(
      "pack", "Write a dataset (idx, cifar10, cifar100, folder) as one HDF5 shard");
  data_pack->add_option("kind", data_args.kind, "idx, cifar10, cifar100 or folder")->required();
  data_pack->add_option("src", data_args.src, "Dataset directory (folder: root of class folders)")
      ->required();
  data_pack->add_option("dst", data_args.dst, "HDF5 shard to write")->required();
  data_pack->add_option("--split", data_args.split, "idx / cifar: train or test");
  data_pack->add_option("--channels", data_args.channels, "folder: 1 or 3 (default 3)");
  data_pack->add_option("--image-size", data_args.image_size,
                        "Every image must be this square size (default: the first image's)");
  CLI::App* data_inspect = data_cmd->add_subcommand(
      "inspect", "Examples, per-class counts, image sizes and a PNG grid; exit 1 on bad images");
  data_inspect->add_option("path", data_args.src, "Dataset directory, image folder or shard")
      ->required();
  data_inspect->add_option("--kind", data_args.kind,
                           "idx, cifar10, cifar100, folder or h5 (default: detected)");
  data_inspect->add_option("--split", data_args.split, "idx / cifar: train or test");
  data_inspect->add_option("--channels", data_args.channels, "folder: 1 or 3 (default 3)");
  data_inspect->add_option("--grid", data_args.grid, "Write a PNG grid of sample images here");
  data_inspect->add_option("--grid-side", data_args.grid_side,
                           "Images per grid row and column (default 8)");

  vmoe::PlanArgs plan;
  CLI::App* plan_cmd = app.add_subcommand(
      "plan", "Parameters, FLOPs, per-rank memory and all-to-all volume of a config on P ranks");
  plan_cmd->add_option("--config", plan.config_path, "Config file (textproto)")->required();
  plan_cmd->add_option("--set", plan.overrides, "Override a config field: path.to.field=value")
      ->take_all();
  plan_cmd->add_option("--world-size", plan.world_size, "Ranks (one device each)")
      ->check(CLI::Range(1, 1 << 20));
  plan_cmd->add_option("--batch", plan.batch, "Global batch (default: data.batch_size)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  plan_cmd
      ->add_option("--microbatches", plan.microbatches,
                   "Micro-batches per rank per step (default: train.microbatches)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  plan_cmd->add_option("--precision", plan.precision, "f32 or bf16 (default: train.precision)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  plan_cmd->add_option("--recompute", plan.recompute, "none or blocks (default: model.recompute)")
      ->check(CLI::IsMember({"none", "blocks"}));
  plan_cmd->add_option("--device-memory-gib", plan.device_memory_gib,
                       "Memory of one device in GiB (default: 141e9 bytes, an H200)");
  plan_cmd->add_flag("--json", plan.json, "Print JSON");
  CLI::Option* allocate_opt =
      plan_cmd
          ->add_option("--allocate-rank", plan.allocate_rank,
                       "Allocate and initialise this rank's share of the parameter store (CPU)")
          ->check(CLI::Range(0, 1 << 20));

  vmoe::BenchArgs bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Benchmarks of this machine");
  CLI::App* bench_train = bench_cmd->add_subcommand(
      "train", "Training steps of a config on random data: step time, images/s, FLOP rate");
  bench_train->add_option("--config", bench.config_path, "Config file (textproto)")->required();
  bench_train->add_option("--set", bench.overrides, "Override a config field: path.to.field=value")
      ->take_all();
  bench_train->add_option("--steps", bench.steps, "Timed steps (default 10)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  bench_train->add_option("--warmup", bench.warmup, "Untimed steps first (default 3)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  bench_train->add_option("--batch", bench.batch, "Images per step (default: data.batch_size)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  bench_train
      ->add_option("--gemm-size", bench.gemm_size,
                   "n of the n x n x n GEMM the step's FLOP rate is compared with (default 1024)")
      ->check(CLI::Range(int64_t(16), int64_t(1) << 15));
  bench_train
      ->add_option("--profile", bench.profile_steps,
                   "After the timed steps, run this many more with every kernel timed and print "
                   "the time per region, phase and kernel kind")
      ->expected(0, 1)
      ->default_str("5")
      ->check(CLI::PositiveNumber);
  bench_train->add_flag("--json", bench.json, "Print JSON");

  vmoe::UpcycleArgs upcycle;
  CLI::App* upcycle_cmd = app.add_subcommand(
      "upcycle", "Initialise a V-MoE from a dense ViT's weights (experts = its MLPs) and save it");
  upcycle_cmd->add_option("--from", upcycle.from, "Dense model's weights file or checkpoint")
      ->required();
  upcycle_cmd->add_option("--config", upcycle.config_path, "V-MoE config (textproto)")->required();
  upcycle_cmd->add_option("--output", upcycle.output, "Weights file to write")->required();
  upcycle_cmd->add_option("--set", upcycle.overrides, "Override a config field")->take_all();

  CLI::App* info_cmd = app.add_subcommand(
      "info", "Print the build's features (CUDA, cuDNN, NCCL, MPI, HDF5) and the devices seen");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other error: CLI11's own text with the offending argument cut short.
    vmoe::abort_job(vmoe::error_text(e.what(), 400) + " (run `vmoe --help` for the options)");
  }
  // "train", "data pack", ...: the command line named in errors.
  std::string command;
  for (const CLI::App* sub = &app; !sub->get_subcommands().empty();) {
    sub = sub->get_subcommands().front();
    command += (command.empty() ? "" : " ") + sub->get_name();
  }
  std::unique_ptr<vmoe::MpiRuntime> runtime;
  try {
    runtime = std::make_unique<vmoe::MpiRuntime>();
    vmoe::LaunchInfo launch{runtime->world(), runtime->local_ranks()};
    if (train_cmd->parsed()) return vmoe::run_train(train, launch);
    if (launch.world->size() > 1) {
      throw std::runtime_error("`vmoe " + command +
                               "` runs on one process; start it without mpirun / srun");
    }
    if (info_cmd->parsed()) return vmoe::run_info();
    if (upcycle_cmd->parsed()) return vmoe::run_upcycle(upcycle);
    if (plan_cmd->parsed()) {
      plan.allocate = allocate_opt->count() > 0;
      return vmoe::run_plan(plan);
    }
    if (bench_train->parsed()) return vmoe::run_bench_train(bench);
    if (bench_cmd->parsed())
      throw std::invalid_argument("`vmoe bench` needs a benchmark to run: `vmoe bench train`");
    if (eval_cmd->parsed())
      return eval.fewshot.empty() ? vmoe::run_eval(eval) : vmoe::run_fewshot_eval(eval);
    if (predict_cmd->parsed()) return vmoe::run_predict(predict);
    if (plot_cmd->parsed()) return vmoe::run_plot(plot);
    if (routing_map_cmd->parsed()) return vmoe::run_routing_map(routing_map);
    if (data_cmd->parsed()) {
      data_args.command = data_cmd->get_subcommands().front()->get_name();
      return vmoe::run_data(data_args);
    }
    if (ckpt_cmd->parsed()) {
      ckpt.command = ckpt_cmd->get_subcommands().front()->get_name();
      return vmoe::run_ckpt(ckpt);
    }
  } catch (const std::bad_alloc&) {
    // What was being allocated is named where it is known (Storage, readers); this is the rest.
    vmoe::abort_job("out of memory in `vmoe " + command +
                    "` (a memory allocation failed; the data or model is too large for this "
                    "machine)");
  } catch (const std::length_error& e) {
    vmoe::abort_job("a size too large for memory in `vmoe " + command + "` (" + e.what() + ")");
  } catch (const std::exception& e) {
    // Under MPI: print (once, by the failing rank) and MPI_Abort, so ranks blocked in a
    // collective do not hang.
    vmoe::abort_job(e);
  } catch (...) {
    vmoe::abort_job("unknown error in `vmoe " + command + "`");
  }
  return 0;
}
