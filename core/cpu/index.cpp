// CPU indexing kernels: row select / row scatter-add, gather along the last axis, top-k,
// stable argsort, one-hot.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

void index_select(const Tensor& x, const Tensor& idx, const Tensor& out) {
  // Not numel / rows: x may have no rows, and its -1 indices still give zero rows.
  int64_t row = 1;
  for (int64_t d = 1; d < x.dim(); ++d)
    row *= x.size(d);
  const int64_t m = idx.numel();
  const size_t bytes = size_t(row) * dtype_size(x.dtype());
  const char* px = static_cast<const char*>(x.device_raw());
  char* po = static_cast<char*>(out.device_raw());
  dispatch_index(idx.dtype(), "index_select", [&]<class I>(I) {
    const I* pi = idx.device_data<I>();
    const int64_t rows = x.size(0);
    check_in_range(x.device(), "index_select", "index", pi, m, -1, rows);
#pragma omp parallel for if (m * row > kParallelGrain)
    for (int64_t i = 0; i < m; ++i) {
      if (pi[i] < 0 || pi[i] >= rows)
        std::memset(po + size_t(i) * bytes, 0, bytes);
      else
        std::memcpy(po + size_t(i) * bytes, px + size_t(pi[i]) * bytes, bytes);
    }
  });
}

void index_add(const Tensor& src, const Tensor& idx, const Tensor& out) {
  const int64_t m = idx.numel(), row = src.size(0) ? src.numel() / src.size(0) : 0;
  dispatch_float(src.dtype(), "index_add", [&]<class T>(T) {
    const T* ps = src.device_data<T>();
    T* po = out.device_data<T>();
    dispatch_index(idx.dtype(), "index_add", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      const int64_t rows = out.size(0);
      check_in_range(out.device(), "index_add", "index", pi, m, -1, rows);
      // Rows may repeat in idx: split the columns between threads, never the rows.
      const int64_t chunk = std::max<int64_t>(16, row / 8);
      const int64_t chunks = (row + chunk - 1) / chunk;
#pragma omp parallel for if (m * row > kParallelGrain && chunks > 1)
      for (int64_t cidx = 0; cidx < chunks; ++cidx) {
        const int64_t c0 = cidx * chunk, c1 = std::min(row, c0 + chunk);
        for (int64_t i = 0; i < m; ++i) {
          if (pi[i] < 0 || pi[i] >= rows) continue;
          T* dst = po + pi[i] * row;
          const T* s = ps + i * row;
          for (int64_t c = c0; c < c1; ++c)
            dst[c] += s[c];
        }
      }
    });
  });
}

void gather(const Tensor& x, const Tensor& idx, const Tensor& out) {
  const int64_t n = x.size(-1), k = idx.size(-1), rows = k ? idx.numel() / k : 0;
  dispatch_float(x.dtype(), "gather", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* po = out.device_data<T>();
    dispatch_index(idx.dtype(), "gather", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      check_in_range(x.device(), "gather", "index", pi, rows * k, 0, n);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) {
          const I at = pi[r * k + j];
          po[r * k + j] = at >= 0 && at < n ? px[r * n + at] : T(0);
        }
    });
  });
}

void gather_backward(const Tensor& gy, const Tensor& idx, const Tensor& gx) {
  const int64_t n = gx.size(-1), k = idx.size(-1), rows = k ? idx.numel() / k : 0;
  dispatch_float(gx.dtype(), "gather_backward", [&]<class T>(T) {
    const T* pg = gy.device_data<T>();
    T* po = gx.device_data<T>();
    std::fill(po, po + gx.numel(), T(0));
    dispatch_index(idx.dtype(), "gather_backward", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) {
          const I at = pi[r * k + j];
          if (at >= 0 && at < n) po[r * n + at] += pg[r * k + j];
        }
    });
  });
}

namespace {

// Larger value first; equal values keep the lower index first.
template <class T>
bool ranks_before(const T* row, int64_t a, int64_t b) {
  return row[a] > row[b] || (row[a] == row[b] && a < b);
}

// The k largest of a row by insertion into a sorted list of at most kSmallTopK entries: one
// pass, no allocation (the router's rows are E <= a few hundred wide with k <= 2 or so).
constexpr int64_t kSmallTopK = 8;

// k = 2 (the paper's router) without branches on the data: the held pair updated by selects,
// which random logits would otherwise mispredict about once a row. The same result as the
// insertion below: the first two in order, then j enters only by beating a held value strictly.
template <class T>
void top2_row(const T* row, int64_t n, T* values, int64_t* indices) {
  const bool swap = row[1] > row[0];
  T b1 = swap ? row[1] : row[0], b2 = swap ? row[0] : row[1];
  int64_t i1 = swap, i2 = !swap;
  for (int64_t j = 2; j < n; ++j) {
    const T v = row[j];
    const bool over1 = v > b1, over2 = v > b2;
    b2 = over1 ? b1 : (over2 ? v : b2);
    i2 = over1 ? i1 : (over2 ? j : i2);
    b1 = over1 ? v : b1;
    i1 = over1 ? j : i1;
  }
  values[0] = b1, values[1] = b2;
  indices[0] = i1, indices[1] = i2;
}

template <class T>
void topk_row_small(const T* row, int64_t n, int64_t k, T* values, int64_t* indices) {
  if (k == 2 && n >= 2) {
    top2_row(row, n, values, indices);
    return;
  }
  T best[kSmallTopK];
  int64_t at[kSmallTopK];
  int64_t held = 0;
  for (int64_t j = 0; j < n; ++j) {
    const T v = row[j];
    // Index j is above every held index, so it must beat a held value strictly.
    if (held == k && !(v > best[k - 1])) continue;
    int64_t pos = held < k ? held++ : k - 1;
    for (; pos > 0 && v > best[pos - 1]; --pos) {
      best[pos] = best[pos - 1];
      at[pos] = at[pos - 1];
    }
    best[pos] = v;
    at[pos] = j;
  }
  std::copy(best, best + k, values);
  std::copy(at, at + k, indices);
}

}  // namespace

void topk(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) {
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  dispatch_float(x.dtype(), "topk", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* pv = values.device_data<T>();
    int64_t* pi = indices.device_data<int64_t>();
    if (k <= kSmallTopK) {
#pragma omp parallel for if (rows * n > kParallelGrain)
      for (int64_t r = 0; r < rows; ++r)
        topk_row_small(px + r * n, n, k, pv + r * k, pi + r * k);
      return;
    }
#pragma omp parallel for if (rows * n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = px + r * n;
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int64_t a, int64_t b) { return ranks_before(row, a, b); });
      for (int64_t j = 0; j < k; ++j) {
        pi[r * k + j] = order[size_t(j)];
        pv[r * k + j] = row[order[size_t(j)]];
      }
    }
  });
}

void argsort(const Tensor& x, SortOrder order, const Tensor& out) {
  const bool descending = order == SortOrder::descending;
  const int64_t n = x.size(-1), rows = n ? x.numel() / n : 0;
  auto run = [&](const auto* px) {
    int64_t* po = out.device_data<int64_t>();
#pragma omp parallel for if (rows * n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const auto* row = px + r * n;
      int64_t* o = po + r * n;
      std::iota(o, o + n, 0);
      if (descending)
        std::stable_sort(o, o + n, [&](int64_t a, int64_t b) { return row[a] > row[b]; });
      else
        std::stable_sort(o, o + n, [&](int64_t a, int64_t b) { return row[a] < row[b]; });
    }
  };
  switch (x.dtype()) {
    case DType::f32:
      run(x.device_data<float>());
      break;
    case DType::f64:
      run(x.device_data<double>());
      break;
    case DType::i32:
      run(x.device_data<int32_t>());
      break;
    case DType::i64:
      run(x.device_data<int64_t>());
      break;
    default:
      unsupported("argsort", x.dtype());
  }
}

void one_hot(const Tensor& idx, const Tensor& out) {
  const int64_t classes = out.size(-1), n = idx.numel();
  dispatch_float(out.dtype(), "one_hot", [&]<class T>(T) {
    T* po = out.device_data<T>();
    std::fill(po, po + out.numel(), T(0));
    dispatch_index(idx.dtype(), "one_hot", [&]<class I>(I) {
      const I* pi = idx.device_data<I>();
      check_in_range(idx.device(), "one_hot", "index", pi, n, 0, classes);
      for (int64_t i = 0; i < n; ++i)
        if (pi[i] >= 0 && pi[i] < classes) po[i * classes + pi[i]] = T(1);
    });
  });
}

}  // namespace vmoe::cpu
