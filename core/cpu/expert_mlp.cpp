// CPU kernels of the experts' fused MLP (core/backend.h, expert_mlp): each expert's runs of rows
// that hold a token, one chunk of rows at a time (fc1, bias + GELU and fc2 on a run while it is
// in cache, instead of three passes over the whole [E, R, M] buffer), the padding rows (about a
// tenth of the buffer at capacity 1.05) skipped. Every product is cpu::gemm on a run of rows and
// every row takes the bias_gelu kernels' arithmetic, so that each row gets the bits the composed
// ops (matmul, bias_gelu, stacked_linear) give it wherever gemm's result for a row does not
// depend on the other rows (head_product's routes; docs/benchmarks.md). The bias gradients are
// summed in reduce_sum's chunks (core/cpu/sum_chunks.h) with the padding rows left out.
#include <algorithm>
#include <vector>

#include "core/cpu/bias_gelu_rows.h"
#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"
#include "core/cpu/sum_chunks.h"

namespace vmoe::cpu {

namespace {

template <class T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

// c [m, n] (rows ldc apart) = a [m, k] (rows lda apart) b [k, n] (contiguous), + bias [n] when
// given: one product through gemm, which keeps to one thread inside the callers' parallel loop.
template <class T>
void rows_product(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, T* c,
                  int64_t ldc, const T* bias) {
  GemmArgs g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.b = b;
  g.c = c;
  g.lda = lda;
  g.ldb = n;
  g.ldc = ldc;
  g.stride_a = m * lda;
  g.stride_b = k * n;
  g.stride_c = m * ldc;
  g.bias = bias;
  g.dtype = dtype_of<T>();
  gemm(g);
}

// Over rows [begin, end) of one expert: compute(r0, r1) on each run of rows that hold a token
// (occupied >= 0). Runs are exact: rounding them out to whole 8-row register blocks would take
// in most of the padding, whose gaps (about 10 rows per group of 105) seldom hold a whole
// aligned block.
template <class Compute>
void for_each_run_of_tokens(const int64_t* occupied, int64_t begin, int64_t end, Compute compute) {
  int64_t r = begin;
  while (r < end) {
    while (r < end && occupied[r] < 0)
      ++r;
    const int64_t start = r;
    while (r < end && occupied[r] >= 0)
      ++r;
    if (r > start) compute(start, r);
  }
}

// Row r of p [.., width] set to 0 wherever occupied[r] < 0, for r in [begin, end).
template <class T>
void zero_padding(const int64_t* occupied, int64_t begin, int64_t end, T* p, int64_t width) {
  for (int64_t r = begin; r < end; ++r)
    if (occupied[r] < 0) std::fill(p + r * width, p + (r + 1) * width, T(0));
}

// The tasks of both passes: (expert, chunk of sum_chunk_rows(R) rows).
struct Chunks {
  int64_t rows, count;  // rows per chunk, chunks per expert
  explicit Chunks(int64_t r) : rows(sum_chunk_rows(r)), count(r == 0 ? 0 : (r + rows - 1) / rows) {}
};

// t = b [E, k, n] transposed to [E, n, k].
template <class T>
void transpose_into(const T* b, int64_t experts, int64_t k, int64_t n, std::vector<T>& t) {
  t.resize(size_t(experts * k * n));
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j)
        t[size_t((e * n + j) * k + p)] = b[(e * k + p) * n + j];
}

template <class T>
void forward(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
             const Tensor& w2, const Tensor& b2, const Tensor& pre, const Tensor& h,
             const Tensor& out) {
  const int64_t experts = x.size(0), r = x.size(1), d = x.size(2), m = w1.size(2);
  const T *px = x.device_data<T>(), *pw1 = w1.device_data<T>(), *pb1 = b1.device_data<T>(),
          *pw2 = w2.device_data<T>(), *pb2 = b2.device_data<T>();
  const int64_t* po = occupied.device_data<int64_t>();
  T *ppre = pre.device_data<T>(), *ph = h.device_data<T>(), *pout = out.device_data<T>();
  const Chunks chunks(r);
#pragma omp parallel for schedule(dynamic) if (x.numel() * m > kParallelGrain)
  for (int64_t task = 0; task < experts * chunks.count; ++task) {
    const int64_t e = task / chunks.count, begin = task % chunks.count * chunks.rows;
    const int64_t base = e * r;  // the expert's first row in the buffer
    const T *w1e = pw1 + e * d * m, *b1e = pb1 + e * m, *w2e = pw2 + e * m * d, *b2e = pb2 + e * d;
    const int64_t end = std::min(r, begin + chunks.rows);
    const int64_t* occ = po + base;
    for_each_run_of_tokens(occ, begin, end, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0, at = base + r0;
      rows_product<T>(n, m, d, px + at * d, d, w1e, ppre + at * m, m, nullptr);
      bias_gelu_rows<T>(ppre + at * m, b1e, ph + at * m, n, m);
      rows_product<T>(n, d, m, ph + at * m, m, w2e, pout + at * d, d, b2e);
    });
    zero_padding(occ, begin, end, ppre + base * m, m);
    zero_padding(occ, begin, end, ph + base * m, m);
    zero_padding(occ, begin, end, pout + base * d, d);
  }
}

// gb [E, width] from the chunks' sums part [E, chunks, width], as reduce_sum adds them.
template <class T>
void add_chunks(const std::vector<double>& part, int64_t experts, int64_t chunks, int64_t width,
                T* gb) {
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t j = 0; j < width; ++j) {
      double s = 0;
      for (int64_t c = 0; c < chunks; ++c)
        s += part[size_t((e * chunks + c) * width + j)];
      gb[e * width + j] = T(s);
    }
}

// gb [E] = the sum over each expert's occupied rows of g [E, R] (width 1), in one pass as
// reduce_sum sums a single column.
template <class T>
void sum_single_column(const T* g, const int64_t* occupied, int64_t experts, int64_t r, T* gb) {
  for (int64_t e = 0; e < experts; ++e) {
    double acc = 0;
    for (int64_t i = e * r; i < (e + 1) * r; ++i)
      if (occupied[i] >= 0) acc += g[i];
    gb[e] = T(acc);
  }
}

template <class T>
void backward(const Tensor& gy, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
              const Tensor& w2, const Tensor& pre, const Tensor& gpre, const Tensor& gx,
              const Tensor& gb1, const Tensor& gb2) {
  const int64_t experts = gy.size(0), r = gy.size(1), d = gy.size(2), m = w1.size(2);
  const T *pgy = gy.device_data<T>(), *pb1 = b1.device_data<T>(), *ppre = pre.device_data<T>();
  const int64_t* po = occupied.device_data<int64_t>();
  T *pgpre = gpre.device_data<T>(), *pgx = gx.device_data<T>();
  // w2^T [E, D, M] and w1^T [E, M, D], so that gemm need not repack them for every run; kept
  // between calls (fresh pages cost more than the transpose).
  thread_local std::vector<T> w2t, w1t;
  transpose_into(w2.device_data<T>(), experts, m, d, w2t);
  transpose_into(w1.device_data<T>(), experts, d, m, w1t);
  const Chunks chunks(r);
  // Each chunk's bias-gradient sums [E, chunks, M] and [E, chunks, D], in double.
  thread_local std::vector<double> part1, part2;
  part1.assign(size_t(experts * chunks.count * m), 0.0);
  part2.assign(size_t(experts * chunks.count * d), 0.0);
  // The parallel loop's threads have thread_locals of their own: this thread's, by pointer.
  const T *w2t_all = w2t.data(), *w1t_all = w1t.data();
  double *part1_all = part1.data(), *part2_all = part2.data();
#pragma omp parallel for schedule(dynamic) if (gy.numel() * m > kParallelGrain)
  for (int64_t task = 0; task < experts * chunks.count; ++task) {
    thread_local std::vector<T> gh;  // gy w2^T of one run [n, M]
    const int64_t e = task / chunks.count, begin = task % chunks.count * chunks.rows;
    const int64_t base = e * r;
    const T *b1e = pb1 + e * m, *w2te = w2t_all + e * d * m, *w1te = w1t_all + e * m * d;
    double* s1 = part1_all + task * m;
    double* s2 = part2_all + task * d;
    const int64_t end = std::min(r, begin + chunks.rows);
    const int64_t* occ = po + base;
    for_each_run_of_tokens(occ, begin, end, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0, at = base + r0;
      gh.resize(size_t(n * m));
      rows_product<T>(n, m, d, pgy + at * d, d, w2te, gh.data(), m, nullptr);
      bias_gelu_backward_rows<T>(ppre + at * m, b1e, gh.data(), pgpre + at * m, n, m);
      rows_product<T>(n, d, m, pgpre + at * m, m, w1te, pgx + at * d, d, nullptr);
    });
    zero_padding(occ, begin, end, pgpre + base * m, m);
    zero_padding(occ, begin, end, pgx + base * d, d);
    // The bias gradients' sums of this chunk, row by row as reduce_sum adds them.
    for (int64_t i = begin; i < end; ++i) {
      if (occ[i] < 0) continue;
      const T *gp = pgpre + (base + i) * m, *gyr = pgy + (base + i) * d;
      for (int64_t j = 0; j < m; ++j)
        s1[j] += gp[j];
      for (int64_t j = 0; j < d; ++j)
        s2[j] += gyr[j];
    }
  }
  T *pgb1 = gb1.device_data<T>(), *pgb2 = gb2.device_data<T>();
  if (m == 1)
    sum_single_column(pgpre, po, experts, r, pgb1);
  else
    add_chunks(part1, experts, chunks.count, m, pgb1);
  if (d == 1)
    sum_single_column(pgy, po, experts, r, pgb2);
  else
    add_chunks(part2, experts, chunks.count, d, pgb2);
}

}  // namespace

void expert_mlp(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                const Tensor& w2, const Tensor& b2, const Tensor& pre, const Tensor& h,
                const Tensor& out) {
  dispatch_in<DTypeSet::f32_f64>(x.dtype(), "expert_mlp", "cpu", [&]<class T>(T) {
    forward<T>(x, occupied, w1, b1, w2, b2, pre, h, out);
  });
}

void expert_mlp_backward(const Tensor& gy, const Tensor& occupied, const Tensor& w1,
                         const Tensor& b1, const Tensor& w2, const Tensor& pre, const Tensor& gpre,
                         const Tensor& gx, const Tensor& gb1, const Tensor& gb2) {
  dispatch_in<DTypeSet::f32_f64>(gy.dtype(), "expert_mlp_backward", "cpu", [&]<class T>(T) {
    backward<T>(gy, occupied, w1, b1, w2, pre, gpre, gx, gb1, gb2);
  });
}

}  // namespace vmoe::cpu
