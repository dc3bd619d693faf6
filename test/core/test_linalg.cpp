// Tests of core/cpu/linalg: the LAPACKE symmetric eigendecomposition against known matrices.
#include <catch2/catch.hpp>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/cpu/linalg.h"

using vmoe::symmetric_eigen;

TEST_CASE("symmetric_eigen of [[2, 1], [1, 2]] gives 1, 3 and the diagonals") {
  const auto e = symmetric_eigen({2, 1, 1, 2}, 2);
  REQUIRE(e.n == 2);
  CHECK(e.values[0] == Approx(1.0).margin(1e-12));
  CHECK(e.values[1] == Approx(3.0).margin(1e-12));
  const double r = 1 / std::sqrt(2.0);
  // Column 0 is +-(1, -1)/sqrt2, column 1 is +-(1, 1)/sqrt2 (row-major: vectors[i * n + j]).
  CHECK(std::abs(e.vectors[0]) == Approx(r));
  CHECK(e.vectors[2] == Approx(-e.vectors[0]));
  CHECK(std::abs(e.vectors[1]) == Approx(r));
  CHECK(e.vectors[3] == Approx(e.vectors[1]));
}

TEST_CASE("symmetric_eigen reconstructs a 3x3 matrix with orthonormal vectors") {
  // Eigenvalues of this tridiagonal matrix: 2 - sqrt2, 2, 2 + sqrt2.
  const std::vector<double> a = {2, -1, 0, -1, 2, -1, 0, -1, 2};
  const auto e = symmetric_eigen(a, 3);
  CHECK(e.values[0] == Approx(2 - std::sqrt(2.0)));
  CHECK(e.values[1] == Approx(2.0));
  CHECK(e.values[2] == Approx(2 + std::sqrt(2.0)));
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double rec = 0, dot = 0;
      for (int k = 0; k < 3; ++k) {
        rec += e.vectors[i * 3 + k] * e.values[k] * e.vectors[j * 3 + k];
        dot += e.vectors[k * 3 + i] * e.vectors[k * 3 + j];
      }
      CHECK(rec == Approx(a[i * 3 + j]).margin(1e-12));
      CHECK(dot == Approx(i == j ? 1.0 : 0.0).margin(1e-12));
    }
  }
}

TEST_CASE("symmetric_eigen rejects bad sizes and non-finite values with named errors") {
  CHECK_THROWS_WITH(symmetric_eigen({1, 2, 3}, 2), Catch::Contains("expected n * n = 4"));
  CHECK_THROWS_WITH(symmetric_eigen({}, 0), Catch::Contains("n must be >= 1, got 0"));
  CHECK_THROWS_WITH(symmetric_eigen({1, NAN, NAN, 1}, 2), Catch::Contains("non-finite"));
}
