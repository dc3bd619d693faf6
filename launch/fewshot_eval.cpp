// `vmoe eval --fewshot 1,5,10,25`: few-shot linear evaluation of saved weights (PAPER.md).
// Pre-logits (eval mode, no noise, no grad) of the few-shot examples drawn from the train split
// and of the whole test split go to data/fewshot's ridge solver; the table is printed and
// written to WORKDIR/fewshot.csv. With representation_size 0 the pre-logits are the final
// LayerNorm'd class token (or the mean patch token with the "gap" classifier).
//
// As in the reference implementation, which computes the representation of the whole train
// split before drawing the shots, every example's pre-logits come from the batch a normal
// evaluation pass over its split puts it in (the batches of `vmoe eval` and `vmoe predict`), so
// a V-MoE routes it in the same groups, under the same capacity competition, whatever else is
// drawn: a shot count's row does not depend on the other shot counts asked. Only the train
// batches that hold a drawn example run.
//
// Two figures per shot count (data/fewshot.h): the headline, as the reference reports it, is
// the test accuracy at the lambda best on the test split; beside it the test-free figure, at
// the lambda chosen by leave-one-out on the few-shot train set. --fewshot-features FILE writes
// the drawn examples' pre-logits (the rows `vmoe predict` gives those train images).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/autograd.h"
#include "data/fewshot.h"
#include "hdf5/hdf5_file.h"
#include "launch/commands.h"
#include "launch/evaluate.h"
#include "launch/experiment.h"
#include "launch/routing_flags.h"
#include "launch/saved_model.h"

namespace vmoe {

namespace {

// Pre-logits [rows.size(), R] of examples `rows` of `source` (in that order) with their
// labels. Each is computed in its batch of a full evaluation pass over `source`: batches of
// data.eval_batch_size from example 0, the batch's first example as first_example. Only the
// batches holding a requested example run.
data::FeatureSet pre_logits(const SavedModel& saved, const data::ImageSource& source,
                            const std::vector<int64_t>& rows, const ForwardContext& routing) {
  const config::Config& cfg = saved.config;
  const int64_t batch = cfg.data().eval_batch_size();
  const int64_t n = source.size();
  const EvalBatchFn batch_of = source_eval_batches(source, eval_preprocess_from(cfg));
  // Requested positions in the order of their example.
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  NoGrad no_grad;
  data::FeatureSet f;
  f.n = int64_t(rows.size());
  f.labels.resize(rows.size());
  std::vector<float> batch_features;
  for (size_t k = 0; k < order.size();) {
    const int64_t row = rows[order[k]];
    if (row < 0 || row >= n)
      throw std::runtime_error("few-shot: example " + std::to_string(row) + " is outside the " +
                               std::to_string(n) + " examples of the split");
    const int64_t s = row / batch * batch;
    const int64_t count = std::min(batch, n - s);
    data::Batch b = batch_of(s, count);
    ForwardContext ctx = routing;
    ctx.first_example = s;
    VitOutput out = saved.model->operator()(batch_images(b, saved.model->device()), ctx);
    if (f.dim == 0) {
      f.dim = out.pre_logits.size(1);
      f.features.resize(rows.size() * size_t(f.dim));
    }
    batch_features = to_dtype(out.pre_logits, DType::f32).cpu().to_vector<float>();
    for (; k < order.size() && rows[order[k]] < s + count; ++k) {
      const size_t i = order[k];
      const int64_t r = rows[i] - s;
      std::copy_n(batch_features.begin() + r * f.dim, f.dim,
                  f.features.begin() + int64_t(i) * f.dim);
      f.labels[i] = b.labels[size_t(r)];
    }
  }
  return f;
}

// The first `shots` rows of every class of `all`, which holds `max_shots` rows per class in
// class order (data::fewshot_indices' order, where each smaller shot set is a prefix).
data::FeatureSet shot_rows(const data::FeatureSet& all, int32_t num_classes, int64_t max_shots,
                           int64_t shots) {
  data::FeatureSet f;
  f.dim = all.dim;
  for (int32_t c = 0; c < num_classes; ++c) {
    for (int64_t j = 0; j < shots; ++j) {
      const int64_t row = c * max_shots + j;
      f.features.insert(f.features.end(), all.features.begin() + row * all.dim,
                        all.features.begin() + (row + 1) * all.dim);
      f.labels.push_back(all.labels[size_t(row)]);
    }
  }
  f.n = shots * num_classes;
  return f;
}

// The drawn train examples' pre-logits, labels and train-split indices, in the layout of
// `vmoe predict` (pre_logits [n, R] f32, labels [n] i32, indices [n] i64).
void write_features(const std::string& path, const data::FeatureSet& f,
                    const std::vector<int64_t>& indices) {
  Hdf5File h5(path, Hdf5File::Mode::Create);
  h5.write("pre_logits", H5Type::f32, {f.n, f.dim}, f.features.data());
  h5.write("labels", H5Type::i32, {f.n}, f.labels.data());
  h5.write("indices", H5Type::i64, {f.n}, indices.data());
  h5.close();
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
  check_routing_flags(cfg, saved.weights_path, {args.capacity_factor, args.bpr});
  ForwardContext routing{Mode::eval, {}, 0};
  if (args.capacity_factor > 0) routing.eval_capacity_factor = args.capacity_factor;
  routing.eval_batch_priority = parse_bpr(args.bpr);
  const auto num_classes = static_cast<int32_t>(cfg.model().num_classes());

  // The largest shot set; each smaller one is its per-class prefix.
  const int64_t max_shots = *std::max_element(shots.begin(), shots.end());
  // Any reader: labels come without decoding; only the batches holding drawn examples are.
  const std::shared_ptr<data::ImageSource> train_split = open_split(cfg, data::Split::train);
  std::vector<int32_t> train_labels(static_cast<size_t>(train_split->size()));
  for (int64_t i = 0; i < train_split->size(); ++i)
    train_labels[size_t(i)] = train_split->label(i);
  const std::vector<int64_t> indices =
      data::fewshot_indices(train_labels, num_classes, max_shots, args.fewshot_seed);
  const data::FeatureSet train_all = pre_logits(saved, *train_split, indices, routing);
  const std::shared_ptr<data::ImageSource> test_split = open_split(cfg, data::Split::test);
  std::vector<int64_t> test_rows(static_cast<size_t>(test_split->size()));
  std::iota(test_rows.begin(), test_rows.end(), int64_t(0));
  const data::FeatureSet test = pre_logits(saved, *test_split, test_rows, routing);
  std::printf(
      "few-shot: pre-logits of dim %lld, %lld train examples drawn (seed %llu), "
      "%lld test examples\n",
      static_cast<long long>(test.dim), static_cast<long long>(train_all.n),
      static_cast<unsigned long long>(args.fewshot_seed), static_cast<long long>(test.n));
  if (!args.fewshot_features.empty()) {
    write_features(args.fewshot_features, train_all, indices);
    std::printf("drawn train features: %s\n", args.fewshot_features.c_str());
  }

  const std::string csv_path = (std::filesystem::path(saved.output_dir) / "fewshot.csv").string();
  std::ofstream csv(csv_path);
  if (!csv) throw std::runtime_error("cannot write '" + csv_path + "'");
  // Headline first: the reference's figure (lambda best on the test split); then the test-free
  // figure (lambda by leave-one-out on the few-shot train set) and that leave-one-out accuracy.
  csv << "shots,accuracy_best_lambda_on_test,best_lambda_on_test,accuracy_loo_lambda,loo_lambda,"
         "loo_train_accuracy\n";
  std::printf(
      "accuracy: test accuracy at the lambda of the grid 2^-10..2^19 best on the test split, the "
      "figure the reference reports (lambda tuned on test)\n"
      "test-free: test accuracy at the lambda chosen by leave-one-out (LOO) accuracy on the "
      "few-shot train set\n");
  std::printf("%5s %9s %11s | %9s %10s %9s\n", "shots", "accuracy", "lambda", "test-free",
              "LOO lambda", "LOO acc");
  for (int64_t s : shots) {
    const data::FewShotResult r =
        data::fewshot_evaluate(shot_rows(train_all, num_classes, max_shots, s), test, num_classes,
                               data::default_l2_regs());
    std::printf("%5lld %8.2f%% %11g | %8.2f%% %10g %8.2f%%\n", static_cast<long long>(s),
                100 * r.best_test_accuracy, r.best_test_l2_reg, 100 * r.loo_test_accuracy,
                r.loo_l2_reg, 100 * r.loo_accuracy);
    std::fflush(stdout);
    csv << s << "," << r.best_test_accuracy << "," << r.best_test_l2_reg << ","
        << r.loo_test_accuracy << "," << r.loo_l2_reg << "," << r.loo_accuracy << "\n";
  }
  std::printf("written: %s\n", csv_path.c_str());
  return 0;
}

}  // namespace vmoe
