// Tests of data/fewshot: shot sampling, the closed-form ridge against formulas and brute force,
// both lambda choices (best on test, as the reference reports; leave-one-out, test-free), and
// accuracy on separable data.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "data/data_error.h"
#include "data/fewshot.h"

using namespace vmoe::data;

namespace {

// Solves (X^T X + lambda I) W = X^T Y by Gaussian elimination (X [n, d], Y [n, k]).
std::vector<double> brute_ridge(const std::vector<double>& x, const std::vector<double>& y,
                                int64_t n, int64_t d, int64_t k, double lambda,
                                int64_t skip_row = -1) {
  std::vector<double> a(d * (d + k), 0.0);  // [d, d + k] augmented
  for (int64_t i = 0; i < n; ++i) {
    if (i == skip_row) continue;
    for (int64_t p = 0; p < d; ++p) {
      for (int64_t q = 0; q < d; ++q)
        a[p * (d + k) + q] += x[i * d + p] * x[i * d + q];
      for (int64_t c = 0; c < k; ++c)
        a[p * (d + k) + d + c] += x[i * d + p] * y[i * k + c];
    }
  }
  for (int64_t p = 0; p < d; ++p)
    a[p * (d + k) + p] += lambda;
  for (int64_t p = 0; p < d; ++p) {  // SPD: no pivoting needed
    for (int64_t r = p + 1; r < d; ++r) {
      const double f = a[r * (d + k) + p] / a[p * (d + k) + p];
      for (int64_t q = p; q < d + k; ++q)
        a[r * (d + k) + q] -= f * a[p * (d + k) + q];
    }
  }
  std::vector<double> w(d * k, 0.0);
  for (int64_t p = d - 1; p >= 0; --p) {
    for (int64_t c = 0; c < k; ++c) {
      double s = a[p * (d + k) + d + c];
      for (int64_t q = p + 1; q < d; ++q)
        s -= a[p * (d + k) + q] * w[q * k + c];
      w[p * k + c] = s / a[p * (d + k) + p];
    }
  }
  return w;
}

// Deterministic pseudo-random value in [-1, 1).
double noise(uint64_t i) {
  i = (i + 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
  i ^= i >> 31;
  return static_cast<double>(i >> 11) / static_cast<double>(1ull << 52) - 1.0;
}

// Class c has a mean with every coordinate uniform in [-sep, sep) (so that every dimension
// carries signal after standardisation), plus `noise_scale` uniform noise, in `dim` dimensions.
FeatureSet blobs(int32_t classes, int64_t per_class, int64_t dim, double sep, double noise_scale,
                 uint64_t salt) {
  FeatureSet f;
  f.dim = dim;
  for (int32_t c = 0; c < classes; ++c) {
    for (int64_t j = 0; j < per_class; ++j) {
      for (int64_t d = 0; d < dim; ++d)
        f.features.push_back(float(sep * noise(uint64_t(c * 1000 + d)) +
                                   noise_scale * noise(salt + uint64_t(f.n * dim + d))));
      f.labels.push_back(c);
      ++f.n;
    }
  }
  return f;
}

std::vector<double> targets(const std::vector<int32_t>& labels, int32_t classes) {
  std::vector<double> y(labels.size() * classes, -1.0);
  for (size_t i = 0; i < labels.size(); ++i)
    y[i * classes + labels[i]] = 1.0;
  return y;
}

}  // namespace

TEST_CASE("few-shot lambda grid is 2^-10 .. 2^19") {
  const auto g = default_l2_regs();
  REQUIRE(g.size() == 30);
  CHECK(g.front() == 1.0 / 1024);
  CHECK(g.back() == 524288.0);
  for (size_t i = 1; i < g.size(); ++i)
    CHECK(g[i] == 2 * g[i - 1]);
}

TEST_CASE("few-shot sampling is deterministic, per class and nested over shots") {
  std::vector<int32_t> labels;
  for (int i = 0; i < 300; ++i)
    labels.push_back((i * 7) % 3);
  const auto a = fewshot_indices(labels, 3, 5, 42);
  const auto b = fewshot_indices(labels, 3, 5, 42);
  const auto other = fewshot_indices(labels, 3, 5, 43);
  const auto ten = fewshot_indices(labels, 3, 10, 42);
  CHECK(a == b);
  CHECK(a != other);
  REQUIRE(a.size() == 15);
  REQUIRE(ten.size() == 30);
  CHECK(std::set<int64_t>(a.begin(), a.end()).size() == 15);
  for (int c = 0; c < 3; ++c) {
    for (int j = 0; j < 5; ++j) {
      CHECK(labels[a[c * 5 + j]] == c);
      CHECK(a[c * 5 + j] == ten[c * 10 + j]);  // the 5-shot set is a prefix of the 10-shot set
    }
  }
  // Not simply the first examples of each class in file order.
  std::vector<int64_t> first;
  for (int c = 0; c < 3; ++c)
    for (int i = 0, k = 0; k < 5; ++i)
      if (labels[i] == c) first.push_back(i), ++k;
  CHECK(a != first);
}

TEST_CASE("few-shot sampling errors name the class and the counts") {
  std::vector<int32_t> labels = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2};
  CHECK_THROWS_AS(fewshot_indices(labels, 3, 5, 0), DataError);
  CHECK_THROWS_WITH(fewshot_indices(labels, 3, 5, 0),
                    "few-shot: class 2 has 3 examples in the train split, fewer than the 5 shots "
                    "asked");
  CHECK_THROWS_WITH(fewshot_indices(labels, 4, 1, 0), Catch::Contains("class 3 has 0 examples"));
  CHECK_THROWS_WITH(fewshot_indices(labels, 2, 1, 0), Catch::Contains("label 2 of example 10"));
  CHECK_THROWS_WITH(fewshot_indices(labels, 3, 0, 0), Catch::Contains("shots must be >= 1"));
}

TEST_CASE("few-shot ridge in 1-D matches the closed form with standardisation and bias 100") {
  // Two classes, one feature; the standardised feature u has mean 0, so X^T X + lambda I is
  // diagonal: w_u = sum(u y) / (sum(u^2) + lambda), w_bias = 100 sum(y) / (10^4 n + lambda).
  FeatureSet train;
  train.dim = 1;
  train.features = {1.0f, 2.0f, 4.0f, 7.0f, 11.0f};
  train.labels = {0, 0, 1, 1, 1};
  train.n = 5;
  const double lambda = 3.0;
  double mean = 0, var = 0;
  for (float v : train.features)
    mean += v / 5.0;
  for (float v : train.features)
    var += (v - mean) * (v - mean) / 5.0;
  const double scale = std::sqrt(var) + 1e-5;
  const FewShotRidge ridge(train, 2);
  CHECK(ridge.mean()[0] == Approx(mean));
  CHECK(ridge.scale()[0] == Approx(scale));
  const auto w = ridge.weights(lambda);  // [2, 2]: rows u, bias
  REQUIRE(w.size() == 4);
  double suu = 0;
  double suy[2] = {0, 0}, sy[2] = {0, 0};
  for (int i = 0; i < 5; ++i) {
    const double u = (train.features[i] - mean) / scale;
    suu += u * u;
    for (int c = 0; c < 2; ++c) {
      const double y = train.labels[i] == c ? 1.0 : -1.0;
      suy[c] += u * y;
      sy[c] += y;
    }
  }
  for (int c = 0; c < 2; ++c) {
    CHECK(w[0 * 2 + c] == Approx(suy[c] / (suu + lambda)).epsilon(1e-10));
    CHECK(w[1 * 2 + c] == Approx(100 * sy[c] / (1e4 * 5 + lambda)).epsilon(1e-10));
  }
  // A test point x = 6: prediction = u w_u + 100 w_bias per class.
  const auto p = ridge.predict(w, {6.0f}, 1);
  const double u = (6.0 - mean) / scale;
  for (int c = 0; c < 2; ++c)
    CHECK(p[c] == Approx(u * suy[c] / (suu + lambda) + 1e4 * sy[c] / (5e4 + lambda)));
  CHECK(p[1] > p[0]);
}

TEST_CASE("few-shot ridge solves the normal equations in both the N x N and D x D forms") {
  for (int64_t per_class : {1, 2, 20}) {  // n = 3, 6 (< dim + 1 = 7) and 60 (>= 7)
    const FeatureSet train = blobs(3, per_class, 6, 1.0, 1.0, 100 + per_class);
    const FewShotRidge ridge(train, 3);
    const auto x = ridge.design(train.features, train.n);
    const auto y = targets(train.labels, 3);
    for (double lambda : {0.01, 1.0, 500.0}) {
      const auto w = ridge.weights(lambda);
      const auto ref = brute_ridge(x, y, train.n, 7, 3, lambda);
      for (size_t i = 0; i < w.size(); ++i)
        CHECK(w[i] == Approx(ref[i]).margin(1e-8 * (1 + std::abs(ref[i]))));
      // Leave-one-out predictions equal refitting without the row (standardisation fixed).
      const auto loo = ridge.leave_one_out(lambda);
      for (int64_t i = 0; i < train.n; ++i) {
        const auto wi = brute_ridge(x, y, train.n, 7, 3, lambda, i);
        for (int c = 0; c < 3; ++c) {
          double p = 0;
          for (int d = 0; d < 7; ++d)
            p += x[i * 7 + d] * wi[d * 3 + c];
          CHECK(loo[i * 3 + c] == Approx(p).margin(1e-6 * (1 + std::abs(p))));
        }
      }
    }
  }
}

TEST_CASE("few-shot evaluation reaches accuracy 1 on separable data") {
  for (int64_t shots : {1, 5, 25}) {
    const FeatureSet train = blobs(4, shots, 16, 6.0, 0.5, 7);
    const FeatureSet test = blobs(4, 200, 16, 6.0, 0.5, 99991);
    const FewShotResult r = fewshot_evaluate(train, test, 4, default_l2_regs());
    CHECK(r.shots == shots);
    CHECK(r.loo_test_accuracy == 1.0);
    CHECK(r.best_test_accuracy == 1.0);
  }
}

TEST_CASE("few-shot figures: lambda best on test (headline) and by leave-one-out (test-free)") {
  // Overlapping classes: the grid's lambdas give different leave-one-out and test results.
  const FeatureSet train = blobs(3, 10, 20, 1.0, 2.0, 5);
  const FeatureSet test = blobs(3, 100, 20, 1.0, 2.0, 777);
  const auto grid = default_l2_regs();
  const FewShotResult r = fewshot_evaluate(train, test, 3, grid);
  const FewShotRidge ridge(train, 3);
  const auto y = targets(train.labels, 3);
  double best_acc = -1, best_press = 1e300, best_lambda = 0, best_test = -1, best_test_lambda = 0;
  std::set<double> test_accuracies;
  for (double lambda : grid) {
    const auto loo = ridge.leave_one_out(lambda);
    const double acc = argmax_accuracy(loo, train.labels, 3);
    double press = 0;
    for (size_t i = 0; i < loo.size(); ++i)
      press += (loo[i] - y[i]) * (loo[i] - y[i]);
    if (acc > best_acc || (acc == best_acc && press < best_press))
      best_acc = acc, best_press = press, best_lambda = lambda;
    const double test_acc = argmax_accuracy(
        ridge.predict(ridge.weights(lambda), test.features, test.n), test.labels, 3);
    test_accuracies.insert(test_acc);
    if (test_acc > best_test) best_test = test_acc, best_test_lambda = lambda;  // ties: smaller
  }
  REQUIRE(test_accuracies.size() > 1);  // the choice of lambda matters on this data
  // Headline: the reference's figure, the test accuracy at the lambda best on the test split.
  CHECK(r.best_test_accuracy == best_test);
  CHECK(r.best_test_l2_reg == best_test_lambda);
  // Test-free: the lambda of the best leave-one-out accuracy, the test accuracy there.
  CHECK(r.loo_l2_reg == best_lambda);
  CHECK(r.loo_accuracy == best_acc);
  CHECK(r.loo_test_accuracy ==
        argmax_accuracy(ridge.predict(ridge.weights(best_lambda), test.features, test.n),
                        test.labels, 3));
  CHECK(r.best_test_accuracy >= r.loo_test_accuracy);
  // A one-value grid returns that value for both.
  const FewShotResult one = fewshot_evaluate(train, test, 3, {8.0});
  CHECK(one.loo_l2_reg == 8.0);
  CHECK(one.best_test_l2_reg == 8.0);
  CHECK(one.best_test_accuracy == one.loo_test_accuracy);
  CHECK_THROWS_WITH(fewshot_evaluate(train, test, 3, {}), Catch::Contains("grid is empty"));
  CHECK_THROWS_WITH(ridge.weights(0), Catch::Contains("lambda must be > 0, got 0"));
}
