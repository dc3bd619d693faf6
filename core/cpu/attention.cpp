// CPU kernels of fused attention (core/backend.h: attention_forward / attention_backward): one
// (batch, head) at a time with its [N, N] scores in a per-thread scratch, the (batch, head)
// pairs spread over OpenMP threads. They repeat the composed ops' arithmetic step for step
// (q scaled first, the scores by GEMM, cpu::softmax's row loop, softmax_backward's formula), so
// the fused and composed paths agree to the last bits and the model golden tests hold either
// way. Backward recomputes the probabilities from q and k rather than keeping [BH, N, N].
#include <cblas.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

namespace {

// c [m, n] = op(a) op(b), row-major and packed (leading dimension = row length).
template <class T>
void gemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                 const T* b, T* c) {
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const int lda = int(trans_a ? m : k), ldb = int(trans_b ? k : n);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0f, a, lda, b, ldb, 0.0f, c,
                int(n));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0, a, lda, b, ldb, 0.0, c, int(n));
}

// One (batch, head)'s probabilities: qs [N, Dh] = q * scale, p [N, N] = softmax(qs k^T) by
// rows, with each row's log-sum-exp in lse [N] when given (cpu::softmax's loop, same order).
template <class T>
void probabilities(const T* q, const T* k, int64_t n, int64_t dh, T scale, T* qs, T* p, T* lse) {
  for (int64_t i = 0; i < n * dh; ++i)
    qs[i] = q[i] * scale;
  gemm_packed<T>(false, true, n, n, dh, qs, k, p);
  for (int64_t r = 0; r < n; ++r) {
    T* row = p + r * n;
    T m = row[0];
    for (int64_t j = 1; j < n; ++j)
      m = std::max(m, row[j]);
    T s = 0;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = exp_t(row[j] - m);
      s += row[j];
    }
    const T inv = T(1) / s;
    for (int64_t j = 0; j < n; ++j)
      row[j] *= inv;
    if (lse) lse[r] = m + std::log(s);
  }
}

// Whether the (batch, head) loop is worth threads: below the grain one thread does it all and
// the GEMMs may thread inside.
bool parallel_over_heads(int64_t bh, int64_t n, int64_t dh) {
  return bh > 1 && bh * n * n * dh > kParallelGrain;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const Tensor& out, const Tensor& lse) {
  const int64_t bh = q.size(0), n = q.size(1), dh = q.size(2);
  dispatch_float(q.dtype(), "attention_forward", [&]<class T>(T) {
    const T *pq = q.device_data<T>(), *pk = k.device_data<T>(), *pv = v.device_data<T>();
    T* po = out.device_data<T>();
    T* pl = lse.device_data<T>();
#pragma omp parallel if (parallel_over_heads(bh, n, dh))
    {
      std::vector<T> qs(size_t(n * dh)), p(size_t(n * n));  // this thread's scratch
#pragma omp for schedule(static)
      for (int64_t h = 0; h < bh; ++h) {
        const int64_t off = h * n * dh;
        probabilities<T>(pq + off, pk + off, n, dh, T(scale), qs.data(), p.data(), pl + h * n);
        gemm_packed<T>(false, false, n, dh, n, p.data(), pv + off, po + off);  // [N, Dh]
      }
    }
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& /*out*/,
                        const Tensor& /*lse*/, const Tensor& gout, double scale, const Tensor& gq,
                        const Tensor& gk, const Tensor& gv) {
  // The reference recomputes the softmax exactly as the forward did (out and lse are for
  // kernels that take the probabilities as exp(s - lse)).
  const int64_t bh = q.size(0), n = q.size(1), dh = q.size(2);
  dispatch_float(q.dtype(), "attention_backward", [&]<class T>(T) {
    const T *pq = q.device_data<T>(), *pk = k.device_data<T>(), *pv = v.device_data<T>();
    const T* pg = gout.device_data<T>();
    T *pgq = gq.device_data<T>(), *pgk = gk.device_data<T>(), *pgv = gv.device_data<T>();
    const T s = T(scale);
#pragma omp parallel if (parallel_over_heads(bh, n, dh))
    {
      std::vector<T> qs(size_t(n * dh)), p(size_t(n * n)), dp(size_t(n * n));
#pragma omp for schedule(static)
      for (int64_t h = 0; h < bh; ++h) {
        const int64_t off = h * n * dh;
        probabilities<T>(pq + off, pk + off, n, dh, s, qs.data(), p.data(), nullptr);
        gemm_packed<T>(true, false, n, dh, n, p.data(), pg + off, pgv + off);  // dV = P^T dO
        gemm_packed<T>(false, true, n, n, dh, pg + off, pv + off, dp.data());  // dP = dO V^T
        for (int64_t r = 0; r < n; ++r) {  // dS = P * (dP - sum(dP * P)), softmax_backward's
          const T* pr = p.data() + r * n;
          T* dr = dp.data() + r * n;
          T sum = 0;
          for (int64_t j = 0; j < n; ++j)
            sum += dr[j] * pr[j];
          for (int64_t j = 0; j < n; ++j)
            dr[j] = pr[j] * (dr[j] - sum);
        }
        gemm_packed<T>(false, false, n, dh, n, dp.data(), pk + off, pgq + off);  // dQs = dS K
        for (int64_t i = 0; i < n * dh; ++i)
          pgq[off + i] *= s;  // through qs = q * scale
        gemm_packed<T>(true, false, n, dh, n, dp.data(), qs.data(), pgk + off);  // dK = dS^T Qs
      }
    }
  });
}

}  // namespace vmoe::cpu
