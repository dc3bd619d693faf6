// Dense linear algebra on plain row-major double buffers through LAPACK (LAPACKE): the
// symmetric eigendecomposition used by closed-form ridge regression (few-shot evaluation).
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe {

struct SymmetricEigen {
  std::vector<double> values;   // [n] eigenvalues in ascending order
  std::vector<double> vectors;  // [n, n] row-major; column j is the eigenvector of values[j]
  int64_t n = 0;
};

// Eigendecomposition a = V diag(values) V^T of a symmetric matrix a [n, n] (row-major; only
// the upper triangle is read) with LAPACKE_dsyevd. Throws std::invalid_argument on a size
// mismatch or n < 1, std::runtime_error naming the LAPACK call and its info code on failure
// (e.g. NaN input or no convergence).
SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n);

}  // namespace vmoe
