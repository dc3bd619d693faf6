// How the backend's row-major GemmArgs (core/backend.h) become a column-major cuBLASLt matmul.
// A row-major m x n matrix with leading dimension ld is the same memory as a column-major n x m
// matrix with the same ld, so C = op(A) op(B) (row-major) is computed as the column-major
// C^T = op(B)^T op(A)^T: B comes first, A second, the problem is n x m x k, and each operand's
// transpose flag is kept. Pure host code, tested without a GPU.
#pragma once
#include <cstdint>

#include "core/backend.h"

namespace vmoe::cuda {

// One operand as cuBLASLt describes it: a column-major rows x cols matrix (as stored, before
// its op), leading dimension ld, and the element offset between consecutive matrices of a batch.
struct LtMatrix {
  int64_t rows = 0, cols = 0, ld = 0, batch_stride = 0;
};

// The column-major problem: D = alpha * op(first) op(second) + beta * C, with C = D in place.
struct LtGemm {
  int64_t m = 0, n = 0, k = 0, batch = 1;  // op(first) is m x k, op(second) k x n, C m x n
  bool transpose_first = false, transpose_second = false;
  const void* first = nullptr;   // GemmArgs::b
  const void* second = nullptr;  // GemmArgs::a
  void* c = nullptr;
  LtMatrix first_layout, second_layout, c_layout;
};

// The column-major form of `args` (m, n, k > 0).
LtGemm column_major_gemm(const GemmArgs& args);

}  // namespace vmoe::cuda
