// `vmoe eval`: evaluates saved weights on the test split of their config's dataset, at the
// config's routing or at a given test-time capacity / BPR setting, or over a capacity sweep
// (vanilla and BPR at each capacity, printed and written as CSV).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "launch/capacity_sweep_plot.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/routing_flags.h"
#include "launch/saved_model.h"

namespace vmoe {

namespace {

// The test-time capacity of the command line: finite and in (0, 65536] as the config's
// capacity factors (0, the flag's default, means the config's).
constexpr config::FloatRange kCapacityRange{0, 65536, true};

void print_result(const EvalResult& r) {
  std::printf("test accuracy: %.2f%% (%lld images), loss %.4f", 100 * r.accuracy,
              static_cast<long long>(r.examples), r.loss);
  if (r.moe_gflops_per_image > 0)
    std::printf(", MoE %.4f GFLOPs/image, %.2f%% of assignments dropped", r.moe_gflops_per_image,
                100 * r.dropped_fraction);
  std::printf("\n");
}

}  // namespace

int run_eval(const EvalArgs& args) {
  SavedModel saved = load_saved_model(args.workdir, args.weights, args.overrides);
  const config::Config& cfg = saved.config;
  check_routing_flags(cfg, saved.weights_path,
                      {args.capacity_factor, args.bpr, !args.capacity_sweep.empty()});
  std::optional<double> capacity;
  if (args.capacity_factor != 0) capacity = args.capacity_factor;
  for (double c : args.capacity_sweep)
    config::check_float(c, "--capacity-sweep values", kCapacityRange);
  // Any reader: in-memory kinds and image folders alike (decoded batch by batch).
  const std::shared_ptr<data::ImageSource> test_source = open_split(cfg, data::Split::test);
  const EvalBatchFn test_batches = source_eval_batches(*test_source, eval_preprocess_from(cfg));
  auto run = [&](EvalRouting routing) {
    return evaluate(*saved.model, test_source->size(), test_batches, cfg.data().eval_batch_size(),
                    loss_from(cfg.train()), routing);
  };
  if (args.capacity_sweep.empty()) {
    print_result(run({capacity, parse_bpr(args.bpr)}));
    return 0;
  }
  const std::string csv_path =
      (std::filesystem::path(saved.output_dir) / "capacity_sweep.csv").string();
  std::ofstream csv(csv_path);
  if (!csv) throw std::runtime_error("cannot write '" + csv_path + "'");
  csv << "capacity_factor,routing,accuracy,loss,moe_gflops_per_image,dropped_fraction\n";
  std::printf("%-9s %-8s %9s %8s %14s %8s\n", "capacity", "routing", "accuracy", "loss",
              "MoE GFLOPs/img", "dropped");
  // Vanilla and Batch Prioritized Routing for capacity top-k; Experts Choice has no token
  // order to choose, so one row per capacity, named after the router.
  const bool top_k = cfg.model().moe().router() == config::MoeConfig::TOP_K;
  const std::vector<bool> orders =
      top_k ? std::vector<bool>{false, true} : std::vector<bool>{false};
  for (double c : args.capacity_sweep) {
    for (bool bpr : orders) {
      EvalResult r = run({c, bpr});
      const char* name = !top_k ? "experts_choice" : bpr ? "bpr" : "vanilla";
      std::printf("%-9.3g %-8s %8.2f%% %8.4f %14.4f %7.2f%%\n", c, name, 100 * r.accuracy, r.loss,
                  r.moe_gflops_per_image, 100 * r.dropped_fraction);
      std::fflush(stdout);
      csv << c << "," << name << "," << r.accuracy << "," << r.loss << "," << r.moe_gflops_per_image
          << "," << r.dropped_fraction << "\n";
    }
  }
  csv.close();
  if (!csv) throw std::runtime_error("cannot write '" + csv_path + "'");
  std::printf("written: %s\n", csv_path.c_str());
  // The picture: accuracy vs capacity factor, vanilla vs BPR (through gnuplot).
  const std::string png_path =
      (std::filesystem::path(saved.output_dir) / "capacity_sweep.png").string();
  plot_capacity_sweep(csv_path, png_path);
  std::printf("written: %s\n", png_path.c_str());
  return 0;
}

}  // namespace vmoe
