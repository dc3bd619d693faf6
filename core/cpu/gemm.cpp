// CPU matrix products. f32 products that are skinny (n or k <= 16) or, on AVX-512, narrow (up to
// 384 wide: small models' layers and their gradients) take the register-blocked kernel of
// head_gemm.h: deep ones split along k between threads, deep and tall ones run transposed, the
// rest by rows or one product per thread. Everything else goes through OpenBLAS: batches one
// product per OpenMP thread (OpenBLAS's OpenMP build then uses one thread inside each) unless
// there are fewer large products than threads; single products let OpenBLAS thread internally.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/head_gemm.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

namespace {

// Batch entry i's bias row (GemmArgs::stride_bias), or null.
template <class T = float>
const T* bias_of(const GemmArgs& g, int64_t i) {
  return g.bias ? static_cast<const T*>(g.bias) + i * g.stride_bias : nullptr;
}

// Batch entry i's rows of k that hold terms (GemmArgs::k_used), or null.
const int64_t* used_of(const GemmArgs& g, int64_t i) {
  return g.k_used ? g.k_used + i * g.k : nullptr;
}

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

// The widest of n and k that counts as skinny: the router's [T, D] x [D, E] logits and both of
// their gradients (n or k = E), the classifier head (n or k = classes), a patch embedding of
// 16 pixels. There OpenBLAS's packing and its zero fill of C cost more than the arithmetic.
constexpr int64_t kSkinny = 16;

// The widest sides of a narrow product: a small model's layers ([T, D] x [D, M] with D, M <=
// 384, T the batch's tokens) and their two gradients, dX = dY W^T (n, k <= 384) and dW = X^T dY
// (m, n <= 384, k = T). On AVX-512, OpenBLAS 0.3.21 runs those at 90-200 GFLOP/s on one Xeon
// core pair where head_product's blocks run 200-330 (fashion_vit_ti's shapes, and n or k = 276
// or 384: docs/benchmarks.md); at 512 OpenBLAS is level or ahead.
constexpr int64_t kNarrow = 384;

bool skinny_or_narrow(const GemmArgs& g) {
  if (std::min(g.n, g.k) <= kSkinny) return true;
  // Only the AVX-512 kernel was measured faster than OpenBLAS here.
  return head_kernel() == HeadKernel::avx512 && g.n <= kNarrow &&
         (g.k <= kNarrow || g.m <= kNarrow);
}

// A product's k cut into a fixed number of equal chunks (from k alone, so the result does not
// depend on the thread count), each chunk's share of a b summed into a partial [m, n] by one
// thread, then c = (beta c +) partial 0 + partial 1 + ... in order (+ bias). For the weight
// gradients X^T dY (small m and n, k = the batch's tokens): split by rows, every thread read
// all of dY (4.9 MB at fashion_vit_ti's [6400, 192]), long gone from its cache since the
// forward; by k each thread reads its half of both once, and the step waits on memory half as
// long.
constexpr int64_t kSplitMinDepth = 2048;

int64_t depth_chunks(int64_t k) {
  return std::clamp<int64_t>(k / 768, 1, 16);
}

void split_depth_product(const GemmArgs& g, MatView<float> a, MatView<float> b, float* c) {
  const int64_t chunks = depth_chunks(g.k), depth = (g.k + chunks - 1) / chunks;
  const int64_t size = g.m * g.n;
  // The partials as c^T = b^T a^T where c is taller than wide: the kernel's blocks are 8 rows by
  // up to 48 columns, so [64, 128] runs faster than [128, 64] (and [64, 8] is all tail). Each
  // element is the same products summed in the same order either way.
  const bool transposed = g.n < g.m;
  const int64_t rows = transposed ? g.n : g.m, cols = transposed ? g.m : g.n;
  const float* bias = static_cast<const float*>(g.bias);
  thread_local std::vector<float> partials;  // the caller's, kept between calls
  partials.resize(size_t(chunks * size));
  float* const parts = partials.data();
#pragma omp parallel
  {
    thread_local std::vector<float> scratch;  // b repacked where its columns are strided
#pragma omp for schedule(static)
    for (int64_t t = 0; t < chunks; ++t) {
      const int64_t p0 = t * depth, len = std::min(depth, g.k - p0);
      float* part = parts + t * size;
      if (len <= 0) {
        std::fill(part, part + size, 0.0f);
        continue;
      }
      const MatView<float> at{a.data + p0 * a.cs, a.rs, a.cs}, bt{b.data + p0 * b.rs, b.rs, b.cs};
      const int64_t* used = g.k_used ? g.k_used + p0 : nullptr;
      if (transposed)
        head_product<float>(rows, cols, len, MatView<float>{bt.data, bt.cs, bt.rs},
                            MatView<float>{at.data, at.cs, at.rs}, part, cols, scratch, false,
                            nullptr, used);
      else
        head_product<float>(rows, cols, len, at, bt, part, cols, scratch, false, nullptr, used);
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < g.m; ++r) {
      float* out = c + r * g.ldc;
      for (int64_t j = 0; j < g.n; ++j) {
        const int64_t at = transposed ? j * cols + r : r * cols + j;
        float sum = g.beta == 1 ? out[j] + parts[at] : parts[at];
        for (int64_t t = 1; t < chunks; ++t)
          sum += parts[t * size + at];
        out[j] = bias ? sum + bias[j] : sum;
      }
    }
  }
}

// A deep product taller than wide (an expert's second-layer weight gradient, [128, 64] = X^T dY
// over its 1728 slots) runs as c^T = b^T a^T into a scratch that is then written back
// transposed: the kernel's blocks are 8 rows by up to 48 columns, so [64, 128] runs at 190
// GFLOP/s where [128, 64] ran at 130. Chosen from the shape alone (never from the thread
// count), and each element is the same products summed in the same order.
constexpr int64_t kTallMinDepth = 512;

bool deep_and_tall(const GemmArgs& g) {
  return g.k >= kTallMinDepth && g.n < g.m && g.m <= kNarrow;
}

void transposed_product(const GemmArgs& g, MatView<float> a, MatView<float> b, float* c,
                        const float* bias, const int64_t* used_k) {
  thread_local std::vector<float> ct, scratch;  // c^T [n, m]; b^T repacked where strided
  ct.resize(size_t(g.n * g.m));
  head_product<float>(g.n, g.m, g.k, MatView<float>{b.data, b.cs, b.rs},
                      MatView<float>{a.data, a.cs, a.rs}, ct.data(), g.m, scratch, false, nullptr,
                      used_k);
  // One loop per mode: a vectorised select reads c even where it only writes it, and c's
  // unset contents (denormals) then cost microcode assists, half the product's time.
  const float* t = ct.data();
  const int64_t m = g.m, n = g.n, ldc = g.ldc;
  for (int64_t r = 0; r < m; ++r) {
    float* out = c + r * ldc;
    if (g.beta == 1) {
      for (int64_t j = 0; j < n; ++j)
        out[j] += t[j * m + r];
    } else if (bias) {
      for (int64_t j = 0; j < n; ++j)
        out[j] = t[j * m + r] + bias[j];
    } else {
      for (int64_t j = 0; j < n; ++j)
        out[j] = t[j * m + r];
    }
  }
}

// c = a b (c += a b for beta 1, c = a b + bias given one) for f32 products that are skinny or
// narrow, through
// head_product: a batch of at least as many products as threads one product per thread (the
// per-expert products), else each product's rows split between threads. A product's result
// does not depend on the split. False where it does not apply.
bool skinny_product(const GemmArgs& g, const float* a, const float* b, float* c) {
  if (g.alpha != 1 || (g.beta != 0 && g.beta != 1) || !skinny_or_narrow(g) ||
      (g.c_dtype && *g.c_dtype != DType::f32) || head_kernel() == HeadKernel::blas)
    return false;
  const MatView<float> av = g.trans_a ? MatView<float>{a, 1, g.lda} : MatView<float>{a, g.lda, 1};
  const MatView<float> bv = g.trans_b ? MatView<float>{b, 1, g.ldb} : MatView<float>{b, g.ldb, 1};
  // Rows r0..r1 of product i.
  const auto rows = [&](int64_t i, int64_t r0, int64_t r1) {
    thread_local std::vector<float> scratch;  // b repacked where its columns are strided
    head_product(
        r1 - r0, g.n, g.k, MatView<float>{av.data + i * g.stride_a + r0 * av.rs, av.rs, av.cs},
        MatView<float>{bv.data + i * g.stride_b, bv.rs, bv.cs}, c + i * g.stride_c + r0 * g.ldc,
        g.ldc, scratch, g.beta == 1, bias_of(g, i), used_of(g, i));
  };
  const int64_t work = g.m * g.n * g.k;
  if (g.batch == 1 && g.k >= kSplitMinDepth && g.m <= kNarrow && g.n <= kNarrow &&
      !omp_in_parallel()) {
    split_depth_product(g, av, bv, c);
    return true;
  }
  // Inside a parallel region (the experts' fused MLP on a run of rows) the product keeps to its
  // thread rather than open a nested region that would run on one thread anyway.
  const int64_t max_threads =
      g.batch * work > (1 << 18) && !omp_in_parallel() ? omp_get_max_threads() : 1;
  if (deep_and_tall(g)) {  // whole products, one per thread
#pragma omp parallel for schedule(dynamic) if (max_threads > 1 && g.batch > 1)
    for (int64_t i = 0; i < g.batch; ++i)
      transposed_product(g, MatView<float>{av.data + i * g.stride_a, av.rs, av.cs},
                         MatView<float>{bv.data + i * g.stride_b, bv.rs, bv.cs}, c + i * g.stride_c,
                         bias_of(g, i), used_of(g, i));
    return true;
  }
  if (g.batch >= max_threads && g.batch > 1) {
#pragma omp parallel for schedule(dynamic) if (max_threads > 1)
    for (int64_t i = 0; i < g.batch; ++i)
      rows(i, 0, g.m);
    return true;
  }
  const int64_t threads = std::min<int64_t>(max_threads, (g.m + 7) / 8);
  const int64_t chunk = ((g.m + threads - 1) / threads + 7) / 8 * 8;  // whole 8-row blocks
  for (int64_t i = 0; i < g.batch; ++i) {
#pragma omp parallel for num_threads(int(threads)) if (threads > 1)
    for (int64_t t = 0; t < threads; ++t) {
      const int64_t r0 = t * chunk, r1 = std::min(g.m, r0 + chunk);
      if (r0 < r1) rows(i, r0, r1);
    }
  }
  return true;
}

}  // namespace

void gemm(const GemmArgs& g) {
  if (g.bias && g.beta != 0) throw std::invalid_argument("cpu gemm: a bias with beta != 0");
  if (g.m == 0 || g.n == 0) return;
  dispatch_float(g.dtype, "gemm", [&]<class T>(T) {
    const T* a = static_cast<const T*>(g.a);
    const T* b = static_cast<const T*>(g.b);
    T* c = static_cast<T*>(g.c);
    if (g.k == 0) {
      // BLAS leaves C untouched for k == 0 with beta; make the result explicit.
      for (int64_t i = 0; i < g.batch; ++i) {
        const T* bias = bias_of<T>(g, i);
        for (int64_t r = 0; r < g.m; ++r)
          for (int64_t col = 0; col < g.n; ++col) {
            T& v = c[i * g.stride_c + r * g.ldc + col];
            v = (g.beta == 0 ? T(0) : T(g.beta) * v) + (bias ? bias[col] : T(0));
          }
      }
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (skinny_product(g, a, b, c)) return;
    }
    if (g.bias) {  // BLAS adds to C: the bias in every row first
      for (int64_t i = 0; i < g.batch; ++i)
        for (int64_t r = 0; r < g.m; ++r)
          std::copy(bias_of<T>(g, i), bias_of<T>(g, i) + g.n, c + i * g.stride_c + r * g.ldc);
      GemmArgs onto = g;
      onto.bias = nullptr;
      onto.beta = 1;
      gemm(onto);
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
