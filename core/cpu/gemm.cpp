// CPU matrix products through OpenBLAS. Batches run one product per OpenMP thread (OpenBLAS's
// OpenMP build then uses one thread inside each) unless there are fewer large products than
// threads; single products let OpenBLAS thread internally.
#include <cblas.h>
#include <omp.h>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

namespace {

template <class T>
void gemm_one(const GemmArgs& g, const T* a, const T* b, T* c) {
  const CBLAS_TRANSPOSE ta = g.trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = g.trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), float(g.alpha), a, int(g.lda),
                b, int(g.ldb), float(g.beta), c, int(g.ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), g.alpha, a, int(g.lda), b,
                int(g.ldb), g.beta, c, int(g.ldc));
  }
}

}  // namespace

void gemm(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  dispatch_float(g.dtype, "gemm", [&]<class T>(T) {
    const T* a = static_cast<const T*>(g.a);
    const T* b = static_cast<const T*>(g.b);
    T* c = static_cast<T*>(g.c);
    if (g.k == 0) {
      // BLAS leaves C untouched for k == 0 with beta; make the result explicit.
      for (int64_t i = 0; i < g.batch; ++i)
        for (int64_t r = 0; r < g.m; ++r)
          for (int64_t col = 0; col < g.n; ++col) {
            T& v = c[i * g.stride_c + r * g.ldc + col];
            v = g.beta == 0 ? T(0) : T(g.beta) * v;
          }
      return;
    }
    const int64_t work = g.m * g.n * g.k;
    // With at least as many products as threads, one product per thread beats threading
    // inside each (small and skinny products, e.g. per-expert GEMMs, thread poorly).
    const bool per_thread = g.batch >= omp_get_max_threads() || work < (1 << 22);
    if (g.batch == 1) {
      gemm_one<T>(g, a, b, c);
    } else {
#pragma omp parallel for schedule(dynamic) if (per_thread && g.batch * work > (1 << 15))
      for (int64_t i = 0; i < g.batch; ++i) {
        gemm_one<T>(g, a + i * g.stride_a, b + i * g.stride_b, c + i * g.stride_c);
      }
    }
  });
}

}  // namespace vmoe::cpu
