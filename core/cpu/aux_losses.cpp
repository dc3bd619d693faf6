// CPU kernels of the MoE auxiliary losses over routing groups (core/backend.h, importance_loss
// and load_loss): one pass over [N, E] for the groups' column statistics, the cv^2 of each
// group's row of statistics, and in backward one pass that writes the inputs' gradients. Each
// step is the composed ops' arithmetic (models/moe_losses.cpp: sum, mean, sub, square, div,
// normal_cdf and their backwards): sums in double in reduce_sum's order (core/cpu/sum_chunks.h),
// every product and quotient rounded to T where an op rounds it, so that both give the same bits.
#include <algorithm>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"
#include "core/cpu/normal_cdf.h"
#include "core/cpu/sum_chunks.h"
#include "core/elementwise_math.h"

namespace vmoe::cpu {

namespace {

// Consecutive groups of `size` rows over n rows, the last one shorter when size does not divide n.
struct Groups {
  int64_t n, size, count, full;  // full: the groups of exactly `size` rows
  Groups(int64_t rows, int64_t group_size)
      : n(rows),
        size(group_size),
        count((rows + group_size - 1) / group_size),
        full(rows / group_size) {}
  int64_t begin(int64_t g) const { return g * size; }
  int64_t rows(int64_t g) const { return std::min(size, n - g * size); }
};

// out[e] = the sum over rows [0, s) of value(row, e), e < E, as reduce_sum sums the middle axis
// of [1, s, E]: column sums in double in chunks of sum_chunk_rows(s) rows, the chunks' sums added
// in order (sum_middle); one serial sum when E is 1.
template <class T, class Value>
void column_sums(int64_t s, int64_t e, Value value, T* out) {
  if (e == 1) {
    double acc = 0;
    for (int64_t r = 0; r < s; ++r)
      acc += double(value(r, 0));
    out[0] = T(acc);
    return;
  }
  const int64_t chunk = sum_chunk_rows(s);
  std::vector<double> total(static_cast<size_t>(e), 0.0), acc(static_cast<size_t>(e));
  for (int64_t r0 = 0; r0 < s; r0 += chunk) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t r = r0; r < std::min(s, r0 + chunk); ++r)
      for (int64_t j = 0; j < e; ++j)
        acc[size_t(j)] += double(value(r, j));
    for (int64_t j = 0; j < e; ++j)
      total[size_t(j)] += acc[size_t(j)];
  }
  for (int64_t j = 0; j < e; ++j)
    out[j] = T(total[size_t(j)]);
}

// x, rounded to T and stored: the compiler may not fuse the product that made it into a following
// addition (an FMA), as it may not across the composed ops' kernels.
template <class T>
T rounded(T x) {
  volatile T stored = x;
  return stored;
}

// The sum in double of x[0 .. n) in order, as reduce_sum sums a row.
template <class T>
T row_sum(const T* x, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i)
    acc += double(x[i]);
  return T(acc);
}

// cv_squared_rows (models/moe_losses.cpp) of one row v [E]: with m = mean(v),
// mean((v - m)^2) / m^2, rounded as the composed ops round.
template <class T>
T cv_squared_row(const T* v, int64_t e) {
  const T inv_e = T(1.0 / double(e));
  const T m = rounded(row_sum(v, e) * inv_e);
  double acc = 0;
  for (int64_t j = 0; j < e; ++j) {
    const T d = v[j] - m;
    acc += double(rounded(d * d));
  }
  const T ms = T(acc) * inv_e;
  return ms / (m * m);
}

// Given g, the gradient of cv_squared_row(v): gv [E], through the composed ops' backwards (div,
// square, mean, sub) in their order.
template <class T>
void cv_squared_row_backward(const T* v, int64_t e, T g, T* gv) {
  const T inv_e = T(1.0 / double(e));
  const T m = rounded(row_sum(v, e) * inv_e);
  std::vector<T> d(static_cast<size_t>(e));
  double acc = 0;
  for (int64_t j = 0; j < e; ++j) {
    d[size_t(j)] = v[j] - m;
    acc += double(rounded(d[size_t(j)] * d[size_t(j)]));
  }
  const T ms = T(acc) * inv_e, m2 = m * m;
  const T g_ms = g / m2;
  const T g_m2 = -((g * ms) / (m2 * m2));
  const T g_sumsq = g_ms * inv_e;
  double g_d_sum = 0;
  for (int64_t j = 0; j < e; ++j) {
    gv[j] = rounded(g_sumsq * (T(2) * d[size_t(j)]));  // g_d for now
    g_d_sum += double(gv[j]);
  }
  // m's two uses: square(m) and v - m.
  const T g_m = rounded(g_m2 * (T(2) * m)) + -T(g_d_sum);
  const T g_sumv = rounded(g_m * inv_e);
  for (int64_t j = 0; j < e; ++j)
    gv[j] = gv[j] + g_sumv;
}

// The loss from each group's row of statistics v [G, E]: the full groups' cv^2 summed (sum_all),
// plus the last partial group's.
template <class T>
T grouped_cv_squared(const Groups& groups, const T* v, int64_t e) {
  double full = 0;
  for (int64_t g = 0; g < groups.full; ++g)
    full += double(cv_squared_row(v + g * e, e));
  if (groups.count == groups.full) return T(full);
  const T last = cv_squared_row(v + groups.full * e, e);
  return groups.full > 0 ? T(full) + last : last;
}

template <class T>
void importance_forward(const Tensor& p, int64_t group_size, const Tensor& loss,
                        const Tensor& sums) {
  const int64_t n = p.size(0), e = p.size(1);
  const Groups groups(n, group_size);
  const T* pp = p.device_data<T>();
  T* ps = sums.device_data<T>();
#pragma omp parallel for if (n * e > kParallelGrain)
  for (int64_t g = 0; g < groups.count; ++g) {
    const T* rows = pp + groups.begin(g) * e;
    column_sums<T>(
        groups.rows(g), e, [&](int64_t r, int64_t j) { return rows[r * e + j]; }, ps + g * e);
  }
  *loss.device_data<T>() = grouped_cv_squared(groups, ps, e);
}

template <class T>
void importance_backward(const Tensor& sums, int64_t group_size, const Tensor& g,
                         const Tensor& gp) {
  const int64_t n = gp.size(0), e = gp.size(1);
  const Groups groups(n, group_size);
  const T* ps = sums.device_data<T>();
  const T gl = *g.device_data<T>();
  T* pg = gp.device_data<T>();
#pragma omp parallel for if (n * e > kParallelGrain)
  for (int64_t grp = 0; grp < groups.count; ++grp) {
    std::vector<T> gv(static_cast<size_t>(e));
    cv_squared_row_backward(ps + grp * e, e, gl, gv.data());
    // The group sum's backward: every row of the group gets gv.
    for (int64_t r = groups.begin(grp); r < groups.begin(grp) + groups.rows(grp); ++r)
      std::copy(gv.begin(), gv.end(), pg + r * e);
  }
}

// Phi over a run of values, as the unary op computes it for T.
template <class T>
void normal_cdf_values(const T* z, T* prob, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    normal_cdf_run(z, prob, n);
  } else {
    for (int64_t i = 0; i < n; ++i)
      prob[i] = unary_value<FastMath>(UnaryOp::normal_cdf, z[i]);
  }
}

// Row r's threshold noisy[r, kth[r]]; 0 for a k-th choice out of range, as gather reads it (a
// kernel error, reported before: on devices the host cannot read the kernel goes on).
template <class T>
T threshold_of(const T* noisy, const int64_t* kth, int64_t r, int64_t e) {
  return kth[r] >= 0 && kth[r] < e ? noisy[r * e + kth[r]] : T(0);
}

// z[e] = (logits[e] - threshold) * inv_sigma of one row, as sub then mul_scalar round it.
template <class T>
void load_arguments(const T* logits, T threshold, T inv_sigma, int64_t e, T* z) {
  for (int64_t j = 0; j < e; ++j)
    z[j] = (logits[j] - threshold) * inv_sigma;
}

template <class T>
void load_forward(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
                  int64_t group_size, const Tensor& loss, const Tensor& means) {
  const int64_t n = logits.size(0), e = logits.size(1);
  const Groups groups(n, group_size);
  const T *pl = logits.device_data<T>(), *pn = noisy.device_data<T>();
  const int64_t* pk = kth.device_data<int64_t>();
  check_in_range(logits.device(), "load_loss", "k-th choice", pk, n, 0, e);
  T* pm = means.device_data<T>();
  const T inv_sigma = T(1.0 / sigma);
#pragma omp parallel for if (n * e > kParallelGrain)
  for (int64_t g = 0; g < groups.count; ++g) {
    const int64_t first = groups.begin(g), s = groups.rows(g);
    std::vector<T> z(size_t(s * e)), prob(size_t(s * e));
    for (int64_t r = first; r < first + s; ++r)
      load_arguments(pl + r * e, threshold_of(pn, pk, r, e), inv_sigma, e,
                     z.data() + (r - first) * e);
    normal_cdf_values(z.data(), prob.data(), s * e);
    T* v = pm + g * e;
    column_sums<T>(
        s, e, [&](int64_t r, int64_t j) { return prob[size_t(r * e + j)]; }, v);
    // mean: the sum times 1 / rows, as mul_scalar.
    const T inv_rows = T(1.0 / double(s));
    for (int64_t j = 0; j < e; ++j)
      v[j] = v[j] * inv_rows;
  }
  *loss.device_data<T>() = grouped_cv_squared(groups, pm, e);
}

template <class T>
void load_backward(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
                   int64_t group_size, const Tensor& means, const Tensor& g, const Tensor& glogits,
                   const Tensor& gnoisy) {
  const int64_t n = logits.size(0), e = logits.size(1);
  const Groups groups(n, group_size);
  const T *pl = logits.device_data<T>(), *pn = noisy.device_data<T>(), *pm = means.device_data<T>();
  const int64_t* pk = kth.device_data<int64_t>();
  check_in_range(logits.device(), "load_loss", "k-th choice", pk, n, 0, e);
  T *pgl = glogits.device_data<T>(), *pgn = gnoisy.device_data<T>();
  const T gl = *g.device_data<T>(), inv_sigma = T(1.0 / sigma);
#pragma omp parallel for if (n * e > kParallelGrain)
  for (int64_t grp = 0; grp < groups.count; ++grp) {
    const int64_t first = groups.begin(grp), s = groups.rows(grp);
    // The gradient of each column's mean, then of its sum (mul_scalar's backward).
    std::vector<T> gsum(static_cast<size_t>(e)), z(static_cast<size_t>(e));
    cv_squared_row_backward(pm + grp * e, e, gl, gsum.data());
    const T inv_rows = T(1.0 / double(s));
    for (int64_t j = 0; j < e; ++j)
      gsum[size_t(j)] = gsum[size_t(j)] * inv_rows;
    for (int64_t r = first; r < first + s; ++r) {
      const T threshold = threshold_of(pn, pk, r, e);
      load_arguments(pl + r * e, threshold, inv_sigma, e, z.data());
      T* gdiff = pgl + r * e;
      // normal_cdf's backward (its derivative ignores Phi's value), then mul_scalar's.
#pragma omp simd
      for (int64_t j = 0; j < e; ++j)
        gdiff[j] =
            gsum[size_t(j)] * unary_derivative<FastMath>(UnaryOp::normal_cdf, z[size_t(j)], T(0));
      for (int64_t j = 0; j < e; ++j)
        gdiff[j] = gdiff[j] * inv_sigma;
      // logits - threshold: logits take gdiff as it is, the threshold minus its row sum, which
      // gather's backward puts at the k-th choice of a zero row of the noisy logits.
      T* gn = pgn + r * e;
      std::fill(gn, gn + e, T(0));
      if (pk[r] >= 0 && pk[r] < e) gn[pk[r]] += -row_sum(gdiff, e);
    }
  }
}

}  // namespace

void importance_loss(const Tensor& p, int64_t group_size, const Tensor& loss, const Tensor& sums) {
  dispatch_float(p.dtype(), "importance_loss",
                 [&]<class T>(T) { importance_forward<T>(p, group_size, loss, sums); });
}

void importance_loss_backward(const Tensor& sums, int64_t group_size, const Tensor& g,
                              const Tensor& gp) {
  dispatch_float(gp.dtype(), "importance_loss_backward",
                 [&]<class T>(T) { importance_backward<T>(sums, group_size, g, gp); });
}

void load_loss(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
               int64_t group_size, const Tensor& loss, const Tensor& means) {
  dispatch_float(logits.dtype(), "load_loss", [&]<class T>(T) {
    load_forward<T>(logits, noisy, kth, sigma, group_size, loss, means);
  });
}

void load_loss_backward(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
                        int64_t group_size, const Tensor& means, const Tensor& g,
                        const Tensor& glogits, const Tensor& gnoisy) {
  dispatch_float(logits.dtype(), "load_loss_backward", [&]<class T>(T) {
    load_backward<T>(logits, noisy, kth, sigma, group_size, means, g, glogits, gnoisy);
  });
}

}  // namespace vmoe::cpu
