// `vmoe eval --fewshot 1,5,10,25`: few-shot linear evaluation of saved weights (PAPER.md).
// Pre-logits (eval mode, no noise, no grad) of the few-shot examples drawn from the train split
// and of the whole test split go to data/fewshot's ridge solver; the table is printed and
// written to WORKDIR/fewshot.csv. With representation_size 0 the pre-logits are the final
// LayerNorm'd class token (or the mean patch token with the "gap" classifier).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "core/autograd.h"
#include "data/fewshot.h"
#include "data/subset_source.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/saved_model.h"

namespace vmoe {

namespace {

// Pre-logits [n, R] of every example of `source` with their labels.
data::FeatureSet pre_logits(const SavedModel& saved, const data::ImageSource& source,
                            const ForwardContext& routing) {
  const config::Config& cfg = saved.config;
  const int64_t batch = cfg.data().eval_batch_size();
  const EvalBatchFn batch_of = source_eval_batches(source, eval_preprocess_from(cfg));
  NoGrad no_grad;
  data::FeatureSet f;
  const int64_t n = source.size();
  for (int64_t s = 0; s < n; s += batch) {
    data::Batch b = batch_of(s, std::min(batch, n - s));
    ForwardContext ctx = routing;
    ctx.first_example = s;
    VitOutput out = saved.model->operator()(batch_images(b, saved.model->device()), ctx);
    f.dim = out.pre_logits.size(1);
    const std::vector<float> v = to_dtype(out.pre_logits, DType::f32).cpu().to_vector<float>();
    f.features.insert(f.features.end(), v.begin(), v.end());
    f.labels.insert(f.labels.end(), b.labels.begin(), b.labels.end());
  }
  f.n = n;
  return f;
}

}  // namespace

int run_fewshot_eval(const EvalArgs& args) {
  if (!args.capacity_sweep.empty())
    throw std::runtime_error("--fewshot and --capacity-sweep cannot be combined");
  std::vector<int64_t> shots = args.fewshot;
  for (int64_t s : shots)
    if (s < 1) throw std::runtime_error("--fewshot values must be >= 1, got " + std::to_string(s));
  SavedModel saved = load_saved_model(args.workdir, args.weights, args.overrides);
  const config::Config& cfg = saved.config;
  if (!cfg.model().has_moe() && (args.capacity_factor != 0 || !args.bpr.empty()))
    throw std::runtime_error("--capacity-factor and --bpr need a V-MoE model (" +
                             saved.weights_path + " is dense)");
  if (args.capacity_factor != 0)
    config::check_float(args.capacity_factor, "--capacity-factor", {0, 65536, true});
  ForwardContext routing{Mode::eval, {}, 0};
  if (args.capacity_factor > 0) routing.eval_capacity_factor = args.capacity_factor;
  if (!args.bpr.empty()) routing.eval_batch_priority = args.bpr == "on";
  const auto num_classes = static_cast<int32_t>(cfg.model().num_classes());

  // The largest shot set; each smaller one is its per-class prefix.
  const int64_t max_shots = *std::max_element(shots.begin(), shots.end());
  // Any reader: labels come without decoding; only the drawn examples are decoded.
  const std::shared_ptr<data::ImageSource> train_split = open_split(cfg, data::Split::train);
  std::vector<int32_t> train_labels(static_cast<size_t>(train_split->size()));
  for (int64_t i = 0; i < train_split->size(); ++i)
    train_labels[size_t(i)] = train_split->label(i);
  const std::vector<int64_t> indices =
      data::fewshot_indices(train_labels, num_classes, max_shots, args.fewshot_seed);
  const data::FeatureSet train_all =
      pre_logits(saved, data::SubsetSource(train_split, indices), routing);
  const data::FeatureSet test = pre_logits(saved, *open_split(cfg, data::Split::test), routing);
  std::printf(
      "few-shot: pre-logits of dim %lld, %lld train examples drawn (seed %llu), "
      "%lld test examples\n",
      static_cast<long long>(test.dim), static_cast<long long>(train_all.n),
      static_cast<unsigned long long>(args.fewshot_seed), static_cast<long long>(test.n));

  const std::string csv_path = (std::filesystem::path(saved.output_dir) / "fewshot.csv").string();
  std::ofstream csv(csv_path);
  if (!csv) throw std::runtime_error("cannot write '" + csv_path + "'");
  csv << "shots,accuracy,l2_reg,loo_accuracy,best_test_accuracy,best_test_l2_reg\n";
  std::printf("%5s %9s %10s %9s %15s\n", "shots", "accuracy", "lambda", "LOO acc", "best (lambda)");
  for (int64_t s : shots) {
    data::FeatureSet train;
    train.dim = train_all.dim;
    for (int32_t c = 0; c < num_classes; ++c) {
      for (int64_t j = 0; j < s; ++j) {
        const int64_t row = c * max_shots + j;
        train.features.insert(train.features.end(),
                              train_all.features.begin() + row * train_all.dim,
                              train_all.features.begin() + (row + 1) * train_all.dim);
        train.labels.push_back(train_all.labels[static_cast<size_t>(row)]);
      }
    }
    train.n = s * num_classes;
    const data::FewShotResult r =
        data::fewshot_evaluate(train, test, num_classes, data::default_l2_regs());
    std::printf("%5lld %8.2f%% %10g %8.2f%% %7.2f%% (%g)\n", static_cast<long long>(s),
                100 * r.accuracy, r.l2_reg, 100 * r.loo_accuracy, 100 * r.best_test_accuracy,
                r.best_test_l2_reg);
    std::fflush(stdout);
    csv << s << "," << r.accuracy << "," << r.l2_reg << "," << r.loo_accuracy << ","
        << r.best_test_accuracy << "," << r.best_test_l2_reg << "\n";
  }
  std::printf(
      "lambda chosen by leave-one-out accuracy on the few-shot train set; best = the "
      "highest test accuracy over the grid 2^-10..2^19\nwritten: %s\n",
      csv_path.c_str());
  return 0;
}

}  // namespace vmoe
