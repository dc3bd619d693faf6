// Few-shot linear evaluation: shot sampling, standardisation and eigendecomposition-based ridge.
#include "data/fewshot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/cpu/linalg.h"
#include "data/data_error.h"
#include "data/epoch_order.h"

namespace vmoe::data {

namespace {

constexpr double kBiasFeature = 100.0;
constexpr double kStdEpsilon = 1e-5;

void check_labels(const std::vector<int32_t>& labels, int32_t num_classes, const char* what) {
  if (num_classes < 1)
    throw DataError(std::string(what) + ": num_classes must be >= 1, got " +
                    std::to_string(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      throw DataError(std::string(what) + ": label " + std::to_string(labels[i]) + " of example " +
                      std::to_string(i) + " is outside [0, " + std::to_string(num_classes) + ")");
    }
  }
}

void check_features(const FeatureSet& f, const char* what) {
  if (f.n < 1 || f.dim < 1)
    throw DataError(std::string(what) + ": needs n >= 1 and dim >= 1, got n " +
                    std::to_string(f.n) + ", dim " + std::to_string(f.dim));
  if (static_cast<int64_t>(f.features.size()) != f.n * f.dim ||
      static_cast<int64_t>(f.labels.size()) != f.n) {
    throw DataError(std::string(what) + ": " + std::to_string(f.features.size()) +
                    " features and " + std::to_string(f.labels.size()) + " labels do not match n " +
                    std::to_string(f.n) + " x dim " + std::to_string(f.dim));
  }
}

// c [m, k] = a [m, p] (transposed when ta: a is [p, m]) times b [p, k].
std::vector<double> matmul(const std::vector<double>& a, bool ta, const std::vector<double>& b,
                           int64_t m, int64_t p, int64_t k) {
  std::vector<double> c(static_cast<size_t>(m * k), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    double* ci = &c[static_cast<size_t>(i * k)];
    for (int64_t l = 0; l < p; ++l) {
      const double av = ta ? a[static_cast<size_t>(l * m + i)] : a[static_cast<size_t>(i * p + l)];
      if (av == 0.0) continue;
      const double* bl = &b[static_cast<size_t>(l * k)];
      for (int64_t j = 0; j < k; ++j)
        ci[j] += av * bl[j];
    }
  }
  return c;
}

}  // namespace

std::vector<double> default_l2_regs() {
  std::vector<double> regs;
  for (int e = -10; e <= 19; ++e)
    regs.push_back(std::ldexp(1.0, e));
  return regs;
}

std::vector<int64_t> fewshot_indices(const std::vector<int32_t>& labels, int32_t num_classes,
                                     int64_t shots, uint64_t seed) {
  if (shots < 1) throw DataError("few-shot: shots must be >= 1, got " + std::to_string(shots));
  check_labels(labels, num_classes, "few-shot train split");
  const auto n = static_cast<int64_t>(labels.size());
  std::vector<std::vector<int64_t>> per_class(static_cast<size_t>(num_classes));
  std::vector<int64_t> available(static_cast<size_t>(num_classes), 0);
  for (int32_t l : labels)
    ++available[static_cast<size_t>(l)];
  for (int32_t c = 0; c < num_classes; ++c) {
    if (available[static_cast<size_t>(c)] < shots) {
      throw DataError("few-shot: class " + std::to_string(c) + " has " +
                      std::to_string(available[static_cast<size_t>(c)]) +
                      " examples in the train split, fewer than the " + std::to_string(shots) +
                      " shots asked");
    }
  }
  for (int64_t i : epoch_permutation(n, seed, 0)) {
    auto& list = per_class[static_cast<size_t>(labels[static_cast<size_t>(i)])];
    if (static_cast<int64_t>(list.size()) < shots) list.push_back(i);
  }
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(shots * num_classes));
  for (const auto& list : per_class)
    out.insert(out.end(), list.begin(), list.end());
  return out;
}

FewShotRidge::FewShotRidge(const FeatureSet& train, int32_t num_classes)
    : n_(train.n), dim_(train.dim), cols_(train.dim + 1), classes_(num_classes) {
  check_features(train, "few-shot train features");
  check_labels(train.labels, num_classes, "few-shot train features");
  kernel_form_ = n_ < cols_;
  // Per-feature mean and population std over the few-shot set.
  mean_.assign(static_cast<size_t>(dim_), 0.0);
  scale_.assign(static_cast<size_t>(dim_), 0.0);
  for (int64_t i = 0; i < n_; ++i)
    for (int64_t d = 0; d < dim_; ++d)
      mean_[static_cast<size_t>(d)] += train.features[static_cast<size_t>(i * dim_ + d)];
  for (double& m : mean_)
    m /= static_cast<double>(n_);
  for (int64_t i = 0; i < n_; ++i) {
    for (int64_t d = 0; d < dim_; ++d) {
      const double c =
          train.features[static_cast<size_t>(i * dim_ + d)] - mean_[static_cast<size_t>(d)];
      scale_[static_cast<size_t>(d)] += c * c;
    }
  }
  for (double& s : scale_)
    s = std::sqrt(s / static_cast<double>(n_)) + kStdEpsilon;
  x_ = design(train.features, n_);
  y_.assign(static_cast<size_t>(n_ * classes_), -1.0);
  for (int64_t i = 0; i < n_; ++i)
    y_[static_cast<size_t>(i * classes_ + train.labels[static_cast<size_t>(i)])] = 1.0;

  if (kernel_form_) {
    // X X^T [n, n] = U diag(s) U^T; Z = U.
    const SymmetricEigen eig = symmetric_eigen(
        matmul(
            x_, false,
            [&] {
              std::vector<double> xt(static_cast<size_t>(cols_ * n_));
              for (int64_t i = 0; i < n_; ++i)
                for (int64_t d = 0; d < cols_; ++d)
                  xt[static_cast<size_t>(d * n_ + i)] = x_[static_cast<size_t>(i * cols_ + d)];
              return xt;
            }(),
            n_, cols_, n_),
        n_);
    values_ = eig.values;
    z_ = eig.vectors;
  } else {
    // X^T X [cols, cols] = V diag(s) V^T; Z = X V [n, cols].
    const SymmetricEigen eig = symmetric_eigen(matmul(x_, true, x_, cols_, n_, cols_), cols_);
    values_ = eig.values;
    v_ = eig.vectors;
    z_ = matmul(x_, false, v_, n_, cols_, cols_);
  }
  for (double& s : values_)
    s = std::max(s, 0.0);
  const auto r = static_cast<int64_t>(values_.size());
  zty_ = matmul(z_, true, y_, r, n_, classes_);
}

std::vector<double> FewShotRidge::design(const std::vector<float>& features, int64_t rows) const {
  if (static_cast<int64_t>(features.size()) != rows * dim_) {
    throw DataError("few-shot: " + std::to_string(features.size()) + " feature values for " +
                    std::to_string(rows) + " rows of dim " + std::to_string(dim_));
  }
  std::vector<double> x(static_cast<size_t>(rows * cols_));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t d = 0; d < dim_; ++d) {
      x[static_cast<size_t>(i * cols_ + d)] =
          (features[static_cast<size_t>(i * dim_ + d)] - mean_[static_cast<size_t>(d)]) /
          scale_[static_cast<size_t>(d)];
    }
    x[static_cast<size_t>(i * cols_ + dim_)] = kBiasFeature;
  }
  return x;
}

std::vector<double> FewShotRidge::weights(double lambda) const {
  if (!(lambda > 0)) throw DataError("few-shot: lambda must be > 0, got " + std::to_string(lambda));
  const auto r = static_cast<int64_t>(values_.size());
  std::vector<double> scaled = zty_;  // [r, classes] diag(1 / (s + lambda)) Z^T Y
  for (int64_t j = 0; j < r; ++j)
    for (int32_t c = 0; c < classes_; ++c)
      scaled[static_cast<size_t>(j * classes_ + c)] /= values_[static_cast<size_t>(j)] + lambda;
  if (kernel_form_) {
    // W = X^T (X X^T + lambda I)^-1 Y = X^T U diag(1 / (s + lambda)) U^T Y.
    const std::vector<double> a = matmul(z_, false, scaled, n_, r, classes_);
    return matmul(x_, true, a, cols_, n_, classes_);
  }
  // W = V diag(1 / (s + lambda)) V^T X^T Y, and Z^T Y = V^T X^T Y.
  return matmul(v_, false, scaled, cols_, r, classes_);
}

std::vector<double> FewShotRidge::predict(const std::vector<double>& w,
                                          const std::vector<float>& features, int64_t rows) const {
  if (static_cast<int64_t>(w.size()) != cols_ * classes_)
    throw DataError("few-shot: weights have " + std::to_string(w.size()) + " values, expected " +
                    std::to_string(cols_ * classes_));
  return matmul(design(features, rows), false, w, rows, cols_, classes_);
}

std::vector<double> FewShotRidge::leave_one_out(double lambda) const {
  if (!(lambda > 0)) throw DataError("few-shot: lambda must be > 0, got " + std::to_string(lambda));
  const auto r = static_cast<int64_t>(values_.size());
  // Hat matrix H = Z diag(f) Z^T with f = s / (s + lambda) (kernel) or 1 / (s + lambda) (primal).
  std::vector<double> f(static_cast<size_t>(r));
  for (int64_t j = 0; j < r; ++j) {
    const double s = values_[static_cast<size_t>(j)];
    f[static_cast<size_t>(j)] = kernel_form_ ? s / (s + lambda) : 1.0 / (s + lambda);
  }
  std::vector<double> out(static_cast<size_t>(n_ * classes_), 0.0);
  for (int64_t i = 0; i < n_; ++i) {
    double h = 0, one_minus_h = 0;
    double* yi = &out[static_cast<size_t>(i * classes_)];
    for (int64_t j = 0; j < r; ++j) {
      const double z = z_[static_cast<size_t>(i * r + j)];
      const double zf = z * f[static_cast<size_t>(j)];
      h += z * zf;
      if (kernel_form_) {
        // U is square orthogonal, so 1 - h = sum_j z^2 lambda / (s + lambda) without cancellation.
        one_minus_h += z * z * lambda / (values_[static_cast<size_t>(j)] + lambda);
      }
      for (int32_t c = 0; c < classes_; ++c)
        yi[c] += zf * zty_[static_cast<size_t>(j * classes_ + c)];
    }
    if (!kernel_form_) one_minus_h = 1.0 - h;
    one_minus_h = std::max(one_minus_h, 1e-12);
    // Leave-one-out prediction (yhat - h y) / (1 - h).
    for (int32_t c = 0; c < classes_; ++c)
      yi[c] = (yi[c] - h * y_[static_cast<size_t>(i * classes_ + c)]) / one_minus_h;
  }
  return out;
}

double argmax_accuracy(const std::vector<double>& predictions, const std::vector<int32_t>& labels,
                       int32_t num_classes) {
  const auto n = static_cast<int64_t>(labels.size());
  if (n == 0 || static_cast<int64_t>(predictions.size()) != n * num_classes)
    throw DataError("few-shot: " + std::to_string(predictions.size()) + " predictions for " +
                    std::to_string(n) + " labels x " + std::to_string(num_classes) + " classes");
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double* p = &predictions[static_cast<size_t>(i * num_classes)];
    if (std::max_element(p, p + num_classes) - p == labels[static_cast<size_t>(i)]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

FewShotResult fewshot_evaluate(const FeatureSet& train, const FeatureSet& test, int32_t num_classes,
                               const std::vector<double>& l2_regs) {
  if (l2_regs.empty()) throw DataError("few-shot: the lambda grid is empty");
  check_features(test, "few-shot test features");
  check_labels(test.labels, num_classes, "few-shot test features");
  if (test.dim != train.dim)
    throw DataError("few-shot: test features have dim " + std::to_string(test.dim) +
                    ", train features " + std::to_string(train.dim));
  const FewShotRidge ridge(train, num_classes);
  const std::vector<double> test_x = ridge.design(test.features, test.n);
  const int64_t cols = train.dim + 1;
  FewShotResult result;
  result.shots = train.n / num_classes;
  double best_loo = -1, best_press = std::numeric_limits<double>::infinity();
  result.best_test_accuracy = -1;
  for (double lambda : l2_regs) {
    const std::vector<double> loo = ridge.leave_one_out(lambda);
    const double loo_acc = argmax_accuracy(loo, train.labels, num_classes);
    double press = 0;
    for (int64_t i = 0; i < train.n; ++i) {
      for (int32_t c = 0; c < num_classes; ++c) {
        const double y = train.labels[static_cast<size_t>(i)] == c ? 1.0 : -1.0;
        const double e = loo[static_cast<size_t>(i * num_classes + c)] - y;
        press += e * e;
      }
    }
    const double acc =
        argmax_accuracy(matmul(test_x, false, ridge.weights(lambda), test.n, cols, num_classes),
                        test.labels, num_classes);
    if (loo_acc > best_loo || (loo_acc == best_loo && press < best_press)) {
      best_loo = loo_acc;
      best_press = press;
      result.loo_test_accuracy = acc;
      result.loo_l2_reg = lambda;
      result.loo_accuracy = loo_acc;
    }
    // Strictly greater: ties keep the smaller lambda (the reference ranks the grid by test
    // accuracy and leaves the order of ties to its sort).
    if (acc > result.best_test_accuracy) {
      result.best_test_accuracy = acc;
      result.best_test_l2_reg = lambda;
    }
  }
  return result;
}

}  // namespace vmoe::data
