// CPU reductions: sums over any set of axes, max over the last axis, cumulative sums.
#include <algorithm>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"
#include "core/cpu/sum_chunks.h"

namespace vmoe::cpu {

namespace {

// out[o, i] = sum_r x[o, r, i] for contiguous x [outer, r, inner].
template <class T>
void sum_middle(const T* x, T* out, int64_t outer, int64_t r, int64_t inner) {
  if (inner == 1) {
#pragma omp parallel for if (outer * r > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + o * r;
      double acc = 0;
      for (int64_t j = 0; j < r; ++j)
        acc += row[j];
      out[o] = T(acc);
    }
    return;
  }
  // Columns in blocks of kBlock, rows in chunks (a bias gradient sums [1, T, F] over T: the
  // column blocks alone left one block, one thread). Each chunk's sums are kept in double and
  // added in chunk order; the chunks depend on r only, so the result does not depend on the
  // thread count.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  const int64_t chunk = sum_chunk_rows(r), chunks = (r + chunk - 1) / chunk;
  // With one chunk the sums go straight to out.
  std::vector<double> partial(chunks > 1 ? size_t(outer * chunks * inner) : 0);
  const bool parallel = outer * r * inner > kParallelGrain;
#pragma omp parallel for if (parallel)
  for (int64_t task = 0; task < outer * chunks * blocks; ++task) {
    const int64_t o = task / (chunks * blocks), c = task / blocks % chunks, b = task % blocks;
    const int64_t i0 = b * kBlock, n = std::min(inner, i0 + kBlock) - i0;
    const int64_t j0 = c * chunk, j1 = std::min(r, j0 + chunk);
    double acc[kBlock] = {};  // double, as above: f32 sums of many rows lose digits
    const T* col = x + o * r * inner + i0;
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t i = 0; i < n; ++i)
        acc[i] += col[j * inner + i];
    if (chunks == 1)
      std::copy(acc, acc + n, out + o * inner + i0);  // converts to T
    else
      std::copy(acc, acc + n, partial.data() + (o * chunks + c) * inner + i0);
  }
  if (chunks == 1) return;
#pragma omp parallel for collapse(2) if (parallel)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t c = 0; c < chunks; ++c)
        s += partial[size_t((o * chunks + c) * inner + i)];
      out[o * inner + i] = T(s);
    }
  }
}

}  // namespace

void reduce_sum(const Tensor& x, const Tensor& out) {
  const Shape& xs = x.shape();
  const Shape& os = out.shape();
  // Find whether the reduced axes form one contiguous block.
  int64_t first = -1, last = -1;
  bool one_block = true;
  for (size_t d = 0; d < xs.size(); ++d) {
    if (os[d] == xs[d] || xs[d] == 1) continue;
    if (first < 0)
      first = int64_t(d);
    else if (last != int64_t(d) - 1) {
      // a kept axis of size > 1 between reduced axes
      for (int64_t e = last + 1; e < int64_t(d); ++e)
        if (xs[size_t(e)] != 1) one_block = false;
    }
    last = int64_t(d);
  }
  dispatch_float(x.dtype(), "reduce_sum", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* po = out.device_data<T>();
    if (first < 0) {
      std::copy(px, px + x.numel(), po);
    } else if (one_block) {
      int64_t outer = 1, r = 1, inner = 1;
      for (int64_t d = 0; d < int64_t(xs.size()); ++d) {
        if (d < first)
          outer *= xs[size_t(d)];
        else if (d <= last)
          r *= xs[size_t(d)];
        else
          inner *= xs[size_t(d)];
      }
      sum_middle<T>(px, po, outer, r, inner);
    } else {
      // General case: accumulate through zero strides on one thread (no write races).
      std::vector<double> acc(size_t(out.numel()), 0.0);
      Shape ostr = contiguous_strides(os);
      for (size_t d = 0; d < os.size(); ++d)
        if (os[d] == 1) ostr[d] = 0;
      const Shape xstr = contiguous_strides(xs);
      std::vector<int64_t> idx(xs.size(), 0);
      const int64_t n = x.numel();
      int64_t o = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc[size_t(o)] += px[i];
        for (size_t d = xs.size(); d-- > 0;) {
          o += ostr[d];
          if (++idx[d] < xs[d]) break;
          o -= ostr[d] * xs[d];
          idx[d] = 0;
        }
      }
      for (size_t i = 0; i < acc.size(); ++i)
        po[i] = T(acc[i]);
    }
  });
}

void max_last(const Tensor& x, const Tensor& values, const Tensor& arg) {
  const int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  dispatch_float(x.dtype(), "max", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* pv = values.device_data<T>();
    int64_t* pa = arg.device_data<int64_t>();
#pragma omp parallel for if (rows * n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = px + r * n;
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (row[j] > row[best]) best = j;
      pv[r] = row[best];
      pa[r] = best;
    }
  });
}

void cumsum(const Tensor& x, int64_t outer, int64_t n, int64_t inner, ScanDirection dir,
            const Tensor& out) {
  const bool reverse = dir == ScanDirection::reverse;
  auto run = [&](auto* px, auto* po) {
    using T = std::remove_pointer_t<decltype(po)>;
#pragma omp parallel for collapse(2) if (outer * n * inner > kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        T acc = T(0);
        for (int64_t s = 0; s < n; ++s) {
          const int64_t j = reverse ? n - 1 - s : s;
          const int64_t at = (o * n + j) * inner + i;
          acc += px[at];
          po[at] = acc;
        }
      }
    }
  };
  switch (x.dtype()) {
    case DType::f32:
      run(x.device_data<float>(), out.device_data<float>());
      break;
    case DType::f64:
      run(x.device_data<double>(), out.device_data<double>());
      break;
    case DType::i32:
      run(x.device_data<int32_t>(), out.device_data<int32_t>());
      break;
    case DType::i64:
      run(x.device_data<int64_t>(), out.device_data<int64_t>());
      break;
    default:
      unsupported("cumsum", x.dtype());
  }
}

}  // namespace vmoe::cpu
