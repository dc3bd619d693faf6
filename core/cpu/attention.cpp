// CPU kernels of fused attention (core/backend.h: attention_forward / attention_backward): one
// (batch, head) at a time with its [N, N] scores in a per-thread scratch, the (batch, head)
// pairs spread over OpenMP threads. They repeat the composed ops' steps (q scaled first, the
// scores by a product, cpu::softmax's row loop, softmax_backward's formula); the products are
// head_product's (a small-matrix kernel in f32), so the fused and composed paths agree to a few
// ulps of the products' sums, and the model golden tests hold either way. Backward recomputes
// the probabilities from q and k rather than keeping [BH, N, N].
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/head_gemm.h"
#include "core/cpu/kernels.h"
#include "core/cpu/row_reductions.h"

namespace vmoe::cpu {

namespace {

// Where the rows of one (batch, head) of a [B, H, N, Dh] view start, and their stride: q, k, v
// and their gradients share one layout (`in`), out and gout another (`out`).
struct HeadRows {
  int64_t heads, item_stride, head_stride, row_stride;
  explicit HeadRows(const Tensor& x)
      : heads(x.size(1)),
        item_stride(x.strides()[0]),
        head_stride(x.strides()[1]),
        row_stride(x.strides()[2]) {}
  int64_t start(int64_t bh) const {
    return (bh / heads) * item_stride + (bh % heads) * head_stride;
  }
};

// One (batch, head)'s probabilities: qs [N, Dh] = q * scale (packed), p [N, N] = softmax(qs k^T)
// by rows, with each row's log-sum-exp in lse [N] when given (cpu::softmax's loop, same order).
// q and k rows are `ld` apart.
template <class T>
[[gnu::always_inline]] inline void probabilities(const T* q, const T* k, int64_t ld, int64_t n,
                                                 int64_t dh, T scale, T* qs, T* p, T* lse,
                                                 std::vector<T>& pack) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < dh; ++j)
      qs[r * dh + j] = q[r * ld + j] * scale;
  head_product<T>(n, n, dh, {qs, dh, 1}, {k, 1, ld}, p, n, pack);  // qs k^T
  for (int64_t r = 0; r < n; ++r) {
    T* row = p + r * n;
    const auto [m, s] = exp_row(row, row, n);
    const T inv = T(1) / s;
    for (int64_t j = 0; j < n; ++j)
      row[j] *= inv;
    if (lse) lse[r] = m + std::log(s);
  }
}

// One (batch, head) forward: its probabilities, then out [N, Dh] = P V (rows ldo apart).
template <class T>
[[gnu::always_inline]] inline void forward_head(const T* q, const T* k, const T* v, int64_t ld,
                                                int64_t n, int64_t dh, T scale, T* qs, T* p, T* out,
                                                int64_t ldo, T* lse, std::vector<T>& pack) {
  probabilities<T>(q, k, ld, n, dh, scale, qs, p, lse, pack);
  head_product<T>(n, dh, n, {p, n, 1}, {v, ld, 1}, out, ldo, pack);
}

// One (batch, head) backward into gq, gk, gv (rows ld apart) from g = dOut (rows ldo apart); p
// and dp are [N, N] scratch.
template <class T>
[[gnu::always_inline]] inline void backward_head(const T* q, const T* k, const T* v, int64_t ld,
                                                 const T* g, int64_t ldo, int64_t n, int64_t dh,
                                                 T s, T* qs, T* p, T* dp, T* gq, T* gk, T* gv,
                                                 std::vector<T>& pack) {
  probabilities<T>(q, k, ld, n, dh, s, qs, p, nullptr, pack);
  head_product<T>(n, dh, n, {p, 1, n}, {g, ldo, 1}, gv, ld, pack);  // P^T dO
  head_product<T>(n, n, dh, {g, ldo, 1}, {v, 1, ld}, dp, n, pack);  // dO V^T
  for (int64_t r = 0; r < n; ++r) {  // dS = P * (dP - sum(dP * P)), softmax_backward's
    const T* pr = p + r * n;
    T* dr = dp + r * n;
    const T sum = row_dot(dr, pr, n);
    for (int64_t j = 0; j < n; ++j)
      dr[j] = pr[j] * (dr[j] - sum);
  }
  head_product<T>(n, dh, n, {dp, n, 1}, {k, ld, 1}, gq, ld, pack);  // dQs = dS K
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < dh; ++j)
      gq[r * ld + j] *= s;                                           // through qs = q * scale
  head_product<T>(n, dh, n, {dp, 1, n}, {qs, dh, 1}, gk, ld, pack);  // dK = dS^T Qs
}

// The two on 16-lane AVX-512 vectors, compiled so whatever the build's -march and run only where
// the CPU has it (as the bias + GELU rows): the exponentials, scalings and dS of a 50-wide row
// in three vectors and a masked one instead of six and two scalar steps. Elementwise work gives
// the same bits at any width; the row sums keep row_reductions.h's fixed 8-lane order.
__attribute__((target("avx512f,prefer-vector-width=512"))) void forward_head_avx512(
    const float* q, const float* k, const float* v, int64_t ld, int64_t n, int64_t dh, float scale,
    float* qs, float* p, float* out, int64_t ldo, float* lse, std::vector<float>& pack) {
  forward_head<float>(q, k, v, ld, n, dh, scale, qs, p, out, ldo, lse, pack);
}

__attribute__((target("avx512f,prefer-vector-width=512"))) void backward_head_avx512(
    const float* q, const float* k, const float* v, int64_t ld, const float* g, int64_t ldo,
    int64_t n, int64_t dh, float s, float* qs, float* p, float* dp, float* gq, float* gk, float* gv,
    std::vector<float>& pack) {
  backward_head<float>(q, k, v, ld, g, ldo, n, dh, s, qs, p, dp, gq, gk, gv, pack);
}

// Whether the (batch, head) loop is worth threads: below the grain one thread does it all and
// the GEMMs may thread inside.
bool parallel_over_heads(int64_t bh, int64_t n, int64_t dh) {
  return bh > 1 && bh * n * n * dh > kParallelGrain;
}

}  // namespace

void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       const Tensor& out, const Tensor& lse) {
  const int64_t bh = q.size(0) * q.size(1), n = q.size(2), dh = q.size(3);
  const HeadRows in(q), o(out);
  dispatch_float(q.dtype(), "attention_forward", [&]<class T>(T) {
    const T *pq = q.device_data<T>(), *pk = k.device_data<T>(), *pv = v.device_data<T>();
    T* po = out.device_data<T>();
    T* pl = lse.device_data<T>();
    bool wide = false;
    if constexpr (std::is_same_v<T, float>) wide = cpu_has_avx512f();
#pragma omp parallel if (parallel_over_heads(bh, n, dh))
    {
      std::vector<T> qs(size_t(n * dh)), p(size_t(n * n)), pack;  // this thread's scratch
#pragma omp for schedule(static)
      for (int64_t h = 0; h < bh; ++h) {
        const int64_t off = in.start(h);
        if constexpr (std::is_same_v<T, float>) {
          if (wide) {
            forward_head_avx512(pq + off, pk + off, pv + off, in.row_stride, n, dh, T(scale),
                                qs.data(), p.data(), po + o.start(h), o.row_stride, pl + h * n,
                                pack);
            continue;
          }
        }
        forward_head<T>(pq + off, pk + off, pv + off, in.row_stride, n, dh, T(scale), qs.data(),
                        p.data(), po + o.start(h), o.row_stride, pl + h * n, pack);
      }
    }
  });
}

void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& /*lse*/, const Tensor& gout, double scale, const Tensor& gq,
                        const Tensor& gk, const Tensor& gv) {
  // The reference recomputes the softmax exactly as the forward did (out and lse are for
  // kernels that take the probabilities as exp(s - lse)).
  const int64_t bh = q.size(0) * q.size(1), n = q.size(2), dh = q.size(3);
  const HeadRows in(q), o(out);
  const int64_t ld = in.row_stride, ldo = o.row_stride;
  dispatch_float(q.dtype(), "attention_backward", [&]<class T>(T) {
    const T *pq = q.device_data<T>(), *pk = k.device_data<T>(), *pv = v.device_data<T>();
    const T* pg = gout.device_data<T>();
    T *pgq = gq.device_data<T>(), *pgk = gk.device_data<T>(), *pgv = gv.device_data<T>();
    const T s = T(scale);
    bool wide = false;
    if constexpr (std::is_same_v<T, float>) wide = cpu_has_avx512f();
#pragma omp parallel if (parallel_over_heads(bh, n, dh))
    {
      std::vector<T> qs(size_t(n * dh)), p(size_t(n * n)), dp(size_t(n * n)), pack;
#pragma omp for schedule(static)
      for (int64_t h = 0; h < bh; ++h) {
        const int64_t off = in.start(h);
        const T* g = pg + o.start(h);
        if constexpr (std::is_same_v<T, float>) {
          if (wide) {
            backward_head_avx512(pq + off, pk + off, pv + off, ld, g, ldo, n, dh, s, qs.data(),
                                 p.data(), dp.data(), pgq + off, pgk + off, pgv + off, pack);
            continue;
          }
        }
        backward_head<T>(pq + off, pk + off, pv + off, ld, g, ldo, n, dh, s, qs.data(), p.data(),
                         dp.data(), pgq + off, pgk + off, pgv + off, pack);
      }
    }
  });
}

}  // namespace vmoe::cpu
