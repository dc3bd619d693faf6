// LAPACKE wrappers of core/cpu/linalg.h.
#include "core/cpu/linalg.h"

#include <lapacke.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace vmoe {

SymmetricEigen symmetric_eigen(const std::vector<double>& a, int64_t n) {
  if (n < 1)
    throw std::invalid_argument("symmetric_eigen: n must be >= 1, got " + std::to_string(n));
  if (static_cast<int64_t>(a.size()) != n * n) {
    throw std::invalid_argument("symmetric_eigen: matrix has " + std::to_string(a.size()) +
                                " values, expected n * n = " + std::to_string(n * n));
  }
  for (double v : a) {
    if (!std::isfinite(v))
      throw std::runtime_error("symmetric_eigen: matrix has a non-finite value (" +
                               std::to_string(v) + ")");
  }
  SymmetricEigen out;
  out.n = n;
  out.vectors = a;  // dsyevd overwrites the matrix with the eigenvectors
  out.values.assign(static_cast<size_t>(n), 0.0);
  const auto ln = static_cast<lapack_int>(n);
  const lapack_int info =
      LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', ln, out.vectors.data(), ln, out.values.data());
  if (info != 0) {
    throw std::runtime_error(
        "LAPACKE_dsyevd failed with info " + std::to_string(info) +
        (info < 0 ? " (illegal argument " + std::to_string(-info) + ")" : " (no convergence)") +
        " for a " + std::to_string(n) + "x" + std::to_string(n) + " matrix");
  }
  return out;
}

}  // namespace vmoe
