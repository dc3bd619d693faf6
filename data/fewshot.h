// Few-shot linear evaluation (PAPER.md "Few-shot linear evaluation"): per-class shot sampling
// from a seeded permutation of the training split, standardisation with the few-shot set's
// statistics, a constant bias feature 100, targets 2 * one_hot - 1 and closed-form ridge
// regression through one eigendecomposition shared by every lambda of the grid.
//
// Two figures per shot count, because PAPER.md does not say how lambda is chosen:
// - the headline, as the reference implementation (google-research/vmoe, fewshot.py) reports
//   it: the test accuracy at the lambda of the grid that is best on the test split itself
//   (optimistic: lambda is tuned on the evaluation split); ties go to the smaller lambda;
// - the honest, test-free figure beside it: the test accuracy at the lambda chosen by
//   leave-one-out on the few-shot train set, in closed form from the same eigendecomposition
//   (hat-matrix diagonal, standardisation fixed): the highest leave-one-out accuracy wins,
//   ties go to the lower leave-one-out squared error, then to the smaller lambda.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe::data {

// The grid 2^-10, 2^-9, ..., 2^19.
std::vector<double> default_l2_regs();

// For every class, the indices (into labels) of the first `shots` examples of that class in
// the seeded permutation epoch_permutation(labels.size(), seed, 0); the result is ordered by
// class, then by permutation position, so the s-shot set of each class is a prefix of its
// (s+1)-shot set. Throws DataError naming the class and both counts when a class has fewer
// than `shots` examples, or when shots < 1 or a label is outside [0, num_classes).
std::vector<int64_t> fewshot_indices(const std::vector<int32_t>& labels, int32_t num_classes,
                                     int64_t shots, uint64_t seed);

// Features [n, dim] row-major with their labels.
struct FeatureSet {
  std::vector<float> features;
  std::vector<int32_t> labels;
  int64_t n = 0;
  int64_t dim = 0;
};

// A ridge regression fitted on a few-shot set, ready to give weights for any lambda.
class FewShotRidge {
 public:
  // Standardises train (mean and std + 1e-5 over its rows, population std), appends the
  // bias feature 100, builds targets 2 * one_hot - 1 and decomposes X X^T [n, n] when
  // n < dim + 1, else X^T X [dim + 1, dim + 1].
  FewShotRidge(const FeatureSet& train, int32_t num_classes);

  // W = (X^T X + lambda I)^-1 X^T Y as [dim + 1, num_classes] row-major (last row: the bias
  // feature's weights). lambda must be > 0.
  std::vector<double> weights(double lambda) const;
  // The design matrix [rows, dim + 1] of raw features [rows, dim]: standardised with the
  // few-shot set's statistics, bias feature 100 appended.
  std::vector<double> design(const std::vector<float>& features, int64_t rows) const;
  // Linear predictions [rows, num_classes] = design(features) W.
  std::vector<double> predict(const std::vector<double>& w, const std::vector<float>& features,
                              int64_t rows) const;
  // Leave-one-out predictions [n, num_classes] on the train set for lambda.
  std::vector<double> leave_one_out(double lambda) const;

  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& scale() const { return scale_; }  // std + 1e-5

 private:
  int64_t n_, dim_, cols_;  // cols_ = dim_ + 1
  int32_t classes_;
  bool kernel_form_;
  std::vector<double> mean_, scale_;
  std::vector<double> x_;       // [n, cols] standardised features and bias
  std::vector<double> y_;       // [n, classes] targets +-1
  std::vector<double> values_;  // [r] eigenvalues (clamped at 0)
  std::vector<double> z_;       // [n, r] eigenvectors (kernel form) or X V (primal form)
  std::vector<double> zty_;     // [r, classes] Z^T Y
  std::vector<double> v_;       // [cols, cols] eigenvectors of X^T X (primal form)
};

struct FewShotResult {
  int64_t shots = 0;
  // Headline (what the reference reports): the best test accuracy over the grid, its lambda.
  double best_test_accuracy = 0;
  double best_test_l2_reg = 0;
  // Test-free: the lambda chosen by leave-one-out on the few-shot train set, the test
  // accuracy there and the leave-one-out accuracy (on the few-shot train set) that chose it.
  double loo_test_accuracy = 0;
  double loo_l2_reg = 0;
  double loo_accuracy = 0;
};

// Fits on train (the few-shot set) and evaluates argmax predictions on test for every lambda;
// returns both figures (see the top of this file).
FewShotResult fewshot_evaluate(const FeatureSet& train, const FeatureSet& test, int32_t num_classes,
                               const std::vector<double>& l2_regs);

// Fraction of rows whose argmax (first maximum) equals the label.
double argmax_accuracy(const std::vector<double>& predictions, const std::vector<int32_t>& labels,
                       int32_t num_classes);

}  // namespace vmoe::data
