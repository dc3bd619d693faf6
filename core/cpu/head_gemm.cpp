// head_product: the register-blocked f32 kernels (AVX2 + FMA, AVX-512) and the BLAS path.
#include "core/cpu/head_gemm.h"

#include "core/cpu/cpu_common.h"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VMOE_HEAD_GEMM_AVX2 1
#endif

namespace vmoe::cpu {

namespace {

// The depth of one pass over c: 256 rows of b [256, n <= 256] and the matching columns of a
// (256 KB at most for b) stay in a core's L2 while every block of c runs through them.
constexpr int64_t kDepth = 256;

// The steps of one piece's FMA chains: its rows [bounds[2q], bounds[2q + 1]) of k for q < count,
// in order. One run of the whole piece, unless the caller skips rows whose terms are all zero.
struct DepthRuns {
  const int64_t* bounds;
  int64_t count;
};

template <class T>
CBLAS_TRANSPOSE blas_layout(MatView<T> x, int& ld) {
  if (x.cs == 1) {
    ld = int(x.rs);
    return CblasNoTrans;
  }
  if (x.rs != 1) throw std::logic_error("head_product: a matrix view needs one unit stride");
  ld = int(x.cs);
  return CblasTrans;
}

template <class T>
void blas_product(int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b, T* c, int64_t ldc,
                  bool add_to_c) {
  int lda = 0, ldb = 0;
  const CBLAS_TRANSPOSE ta = blas_layout(a, lda), tb = blas_layout(b, ldb);
  // A transposed view has its rows `cs` apart; BLAS wants at least one.
  lda = std::max(lda, 1);
  ldb = std::max(ldb, 1);
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0f, a.data, lda, b.data, ldb,
                add_to_c ? 1.0f : 0.0f, c, int(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), 1.0, a.data, lda, b.data, ldb,
                add_to_c ? 1.0 : 0.0, c, int(ldc));
}

#ifdef VMOE_HEAD_GEMM_AVX2

// Lane masks for a block of `w` columns (1..8): the first w lanes on.
__m256i lane_mask(int64_t w) {
  alignas(32) static const int32_t kOnes[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kOnes + 8 - w));
}

// R rows by V vectors of 8 columns: c[r, v] = sum over the runs' p of a(r, p) b[p, v] (with Add,
// c[r, v] += that sum), b rows ldb apart. With Tail, the last vector's lanes beyond the matrix
// are masked off by `last` (masked stores are slow on some cores, so full vectors never use
// them).
template <int R, int V, bool Tail, bool Add>
void block(DepthRuns k, const float* a, int64_t rsa, int64_t csa, const float* b, int64_t ldb,
           float* c, int64_t ldc, const float* add, int64_t ldadd, __m256i last) {
  // The loops over r and v are unrolled in full, so that the accumulators stay in registers.
  __m256 acc[R][V];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v)
      acc[r][v] = _mm256_setzero_ps();
  for (int64_t q = 0; q < k.count; ++q)
    for (int64_t p = k.bounds[2 * q]; p < k.bounds[2 * q + 1]; ++p) {
      const float* bp = b + p * ldb;
      __m256 bv[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v)
        bv[v] =
            Tail && v == V - 1 ? _mm256_maskload_ps(bp + 8 * v, last) : _mm256_loadu_ps(bp + 8 * v);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256 s = _mm256_broadcast_ss(a + r * rsa + p * csa);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v)
          acc[r][v] = _mm256_fmadd_ps(s, bv[v], acc[r][v]);
      }
    }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 8 * v;
      const float* in = add + r * ldadd + 8 * v;
      if (Tail && v == V - 1) {
        if (Add) acc[r][v] = _mm256_add_ps(_mm256_maskload_ps(in, last), acc[r][v]);
        _mm256_maskstore_ps(out, last, acc[r][v]);
      } else {
        if (Add) acc[r][v] = _mm256_add_ps(_mm256_loadu_ps(in), acc[r][v]);
        _mm256_storeu_ps(out, acc[r][v]);
      }
    }
}

template <int V, bool Tail, bool Add>
void column_block(int64_t m, DepthRuns k, const float* a, int64_t rsa, int64_t csa, const float* b,
                  int64_t ldb, float* c, int64_t ldc, const float* add, int64_t ldadd,
                  __m256i last) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    block<4, V, Tail, Add>(k, a + i * rsa, rsa, csa, b, ldb, c + i * ldc, ldc, add + i * ldadd,
                           ldadd, last);
  for (; i < m; ++i)
    block<1, V, Tail, Add>(k, a + i * rsa, rsa, csa, b, ldb, c + i * ldc, ldc, add + i * ldadd,
                           ldadd, last);
}

// With Add, c = add + a b, add's rows ldadd apart (c itself, or a bias row with ldadd 0).
template <bool Add>
void avx2_product(int64_t m, int64_t n, DepthRuns k, MatView<float> a, const float* b, int64_t ldb,
                  float* c, int64_t ldc, const float* add, int64_t ldadd) {
  const __m256i none = _mm256_setzero_si256();
  const auto strip = [&]<int V, bool Tail>(int64_t j, __m256i last) {
    column_block<V, Tail, Add>(m, k, a.data, a.rs, a.cs, b + j, ldb, c + j, ldc, add + j, ldadd,
                               last);
  };
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    strip.template operator()<2, false>(j, none);
  const int64_t w = n - j;  // 0..15 columns left
  if (w == 8)
    strip.template operator()<1, false>(j, none);
  else if (w > 8)
    strip.template operator()<2, true>(j, lane_mask(w - 8));
  else if (w > 0)
    strip.template operator()<1, true>(j, lane_mask(w));
}

// The same kernel on 16-lane AVX-512 vectors, compiled for AVX-512 F whatever the build's
// -march and run only where the CPU has it. Each element is the same one FMA chain over k, in
// the same order, so its results equal the AVX2 kernel's bit for bit; 8-row blocks (16
// accumulators of the 32 registers) halve the loads per FMA, and masked loads and stores are
// cheap here. It repeats `block` with 512-bit intrinsics on purpose: a template cannot take its
// target per instantiation, and a separate file built with -mavx512f would let the linker keep
// that file's AVX-512 copies of inline functions shared with the rest of the program.
#define VMOE_AVX512 __attribute__((target("avx512f")))

template <int R, int V, bool Tail, bool Add>
VMOE_AVX512 void block16(DepthRuns k, const float* a, int64_t rsa, int64_t csa, const float* b,
                         int64_t ldb, float* c, int64_t ldc, const float* add, int64_t ldadd,
                         __mmask16 last) {
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v)
      acc[r][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < k.count; ++q)
    for (int64_t p = k.bounds[2 * q]; p < k.bounds[2 * q + 1]; ++p) {
      const float* bp = b + p * ldb;
      __m512 bv[V];
#pragma GCC unroll 3
      for (int v = 0; v < V; ++v)
        bv[v] = Tail && v == V - 1 ? _mm512_maskz_loadu_ps(last, bp + 16 * v)
                                   : _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 s = _mm512_set1_ps(a[r * rsa + p * csa]);
#pragma GCC unroll 3
        for (int v = 0; v < V; ++v)
          acc[r][v] = _mm512_fmadd_ps(s, bv[v], acc[r][v]);
      }
    }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int v = 0; v < V; ++v) {
      float* out = c + r * ldc + 16 * v;
      const float* in = add + r * ldadd + 16 * v;
      if (Tail && v == V - 1) {
        if (Add) acc[r][v] = _mm512_add_ps(_mm512_maskz_loadu_ps(last, in), acc[r][v]);
        _mm512_mask_storeu_ps(out, last, acc[r][v]);
      } else {
        if (Add) acc[r][v] = _mm512_add_ps(_mm512_loadu_ps(in), acc[r][v]);
        _mm512_storeu_ps(out, acc[r][v]);
      }
    }
}

// Rows i0..i0+R of c, every column: the block's rows of a stay in L1 while b's columns pass.
// Whole strips of 48 columns where n is a multiple of 48 (3 x 8 accumulators: fewer loads per
// FMA), of 32 otherwise, then a masked tail. Every element is the same FMA chain whatever the
// strip width.
template <int R, bool Add>
VMOE_AVX512 void row_block16(int64_t n, DepthRuns k, const float* a, int64_t rsa, int64_t csa,
                             const float* b, int64_t ldb, float* c, int64_t ldc, const float* add,
                             int64_t ldadd) {
  int64_t j = 0;
  if (n % 48 == 0)
    for (; j + 48 <= n; j += 48)
      block16<R, 3, false, Add>(k, a, rsa, csa, b + j, ldb, c + j, ldc, add + j, ldadd, 0);
  for (; j + 32 <= n; j += 32)
    block16<R, 2, false, Add>(k, a, rsa, csa, b + j, ldb, c + j, ldc, add + j, ldadd, 0);
  const int64_t w = n - j;  // 0..31 columns left
  const auto first = [](int64_t lanes) { return __mmask16((1u << lanes) - 1); };
  if (w == 16)
    block16<R, 1, false, Add>(k, a, rsa, csa, b + j, ldb, c + j, ldc, add + j, ldadd, 0);
  else if (w > 16)
    block16<R, 2, true, Add>(k, a, rsa, csa, b + j, ldb, c + j, ldc, add + j, ldadd, first(w - 16));
  else if (w > 0)
    block16<R, 1, true, Add>(k, a, rsa, csa, b + j, ldb, c + j, ldc, add + j, ldadd, first(w));
}

// avx2_product's contract on 16-lane vectors.
template <bool Add>
VMOE_AVX512 void avx512_product(int64_t m, int64_t n, DepthRuns k, MatView<float> a, const float* b,
                                int64_t ldb, float* c, int64_t ldc, const float* add,
                                int64_t ldadd) {
  int64_t i = 0;
  for (; i + 8 <= m; i += 8)
    row_block16<8, Add>(n, k, a.data + i * a.rs, a.rs, a.cs, b, ldb, c + i * ldc, ldc,
                        add + i * ldadd, ldadd);
  for (; i + 4 <= m; i += 4)
    row_block16<4, Add>(n, k, a.data + i * a.rs, a.rs, a.cs, b, ldb, c + i * ldc, ldc,
                        add + i * ldadd, ldadd);
  for (; i < m; ++i)
    row_block16<1, Add>(n, k, a.data + i * a.rs, a.rs, a.cs, b, ldb, c + i * ldc, ldc,
                        add + i * ldadd, ldadd);
}

// Rows 0..7 of an 8 x 8 block (row stride lds) written as its columns (row stride ldd): the
// transpose in registers (unpack, shuffle, then swap the 128-bit halves).
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8], s[8];
  for (int i = 0; i < 8; ++i)
    r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));  // a0 b0 c0 d0 | a4 ..
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
  }
}

// b [k, n] whose columns are strided (b.cs != 1) repacked into `out` [k, n] with unit column
// stride. Where b's stored rows are contiguous (rs 1: a transposed operand, k^T or W^T), by
// 8 x 8 blocks transposed in registers (element by element it took 6% of a ViT step's time,
// mostly the attention's per-head k^T); the edges, and any other layout, element by element.
void repack_columns(MatView<float> b, int64_t k, int64_t n, float* out) {
  int64_t j0 = 0, p0 = 0;
  if (b.rs == 1) {
    j0 = n / 8 * 8;
    p0 = k / 8 * 8;
    for (int64_t j = 0; j < j0; j += 8)
      for (int64_t p = 0; p < p0; p += 8)
        transpose8x8(b.data + j * b.cs + p, b.cs, out + p * n + j, n);
    for (int64_t p = p0; p < k; ++p)  // the last k % 8 rows of the blocked columns
      for (int64_t j = 0; j < j0; ++j)
        out[p * n + j] = b.data[p + j * b.cs];
  }
  for (int64_t p = 0; p < k; ++p)  // the columns past the blocks (all of them for other layouts)
    for (int64_t j = j0; j < n; ++j)
      out[p * n + j] = b.data[p * b.rs + j * b.cs];
}

#endif

HeadKernel widest_head_kernel() {
#ifdef VMOE_HEAD_GEMM_AVX2
  return cpu_has_avx512f() ? HeadKernel::avx512 : HeadKernel::avx2;
#else
  return HeadKernel::blas;
#endif
}

}  // namespace

HeadKernel head_kernel() {
  static const HeadKernel kernel = widest_head_kernel();
  return kernel;
}

bool head_kernel_available(HeadKernel kernel) {
  return kernel <= head_kernel();
}

template <class T>
void head_product_on(HeadKernel kernel, int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b,
                     T* c, int64_t ldc, std::vector<T>& scratch, bool add_to_c, const T* bias,
                     const int64_t* used_k) {
  if (!head_kernel_available(kernel))
    throw std::invalid_argument("head_product_on: this CPU lacks the kernel asked for");
  if (add_to_c && bias) throw std::invalid_argument("head_product_on: add_to_c with a bias");
#ifdef VMOE_HEAD_GEMM_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (kernel != HeadKernel::blas) {
      const float* rows = b.data;
      int64_t ldb = b.rs;
      if (b.cs != 1) {  // repack b [k, n] with unit column stride (repack_columns)
        scratch.resize(size_t(k * n));
        repack_columns(b, k, n, scratch.data());
        rows = scratch.data();
        ldb = n;
      }
      // k in pieces of kDepth: the pieces of a and b a block reads stay in cache while every
      // block of c takes them (a weight gradient's k is the batch's tokens). The first piece
      // writes c (onto c with add_to_c, onto the bias row given one), the later ones add to c.
      thread_local std::vector<int64_t> bounds;  // the used runs of one piece
      for (int64_t p = 0; p < k; p += kDepth) {
        const int64_t depth = std::min(kDepth, k - p);
        int64_t whole[2] = {0, depth};
        DepthRuns runs{whole, 1};
        if (used_k) {
          bounds.clear();
          for (int64_t i = 0; i < depth;) {
            while (i < depth && used_k[p + i] < 0)
              ++i;
            if (i == depth) break;
            bounds.push_back(i);
            while (i < depth && used_k[p + i] >= 0)
              ++i;
            bounds.push_back(i);
          }
          runs = {bounds.data(), int64_t(bounds.size()) / 2};
        }
        const MatView<float> ap{a.data + p * a.cs, a.rs, a.cs};
        const float* bp = rows + p * ldb;
        const bool onto_c = p > 0 || add_to_c;
        const float* add = onto_c ? c : bias;
        const int64_t ldadd = onto_c ? ldc : 0;
        if (kernel == HeadKernel::avx512)
          add ? avx512_product<true>(m, n, runs, ap, bp, ldb, c, ldc, add, ldadd)
              : avx512_product<false>(m, n, runs, ap, bp, ldb, c, ldc, c, ldc);
        else
          add ? avx2_product<true>(m, n, runs, ap, bp, ldb, c, ldc, add, ldadd)
              : avx2_product<false>(m, n, runs, ap, bp, ldb, c, ldc, c, ldc);
      }
      return;
    }
  }
#endif
  (void)scratch;
  (void)used_k;  // BLAS sums every row: the skipped ones add zeros
  if (bias) {    // BLAS adds to c: the bias in every row first
    for (int64_t r = 0; r < m; ++r)
      std::copy(bias, bias + n, c + r * ldc);
    add_to_c = true;
  }
  blas_product(m, n, k, a, b, c, ldc, add_to_c);
}

template <class T>
void head_product(int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b, T* c, int64_t ldc,
                  std::vector<T>& scratch, bool add_to_c, const T* bias, const int64_t* used_k) {
  // f64 always takes BLAS: head_product_on does so for any kernel.
  head_product_on(std::is_same_v<T, float> ? head_kernel() : HeadKernel::blas, m, n, k, a, b, c,
                  ldc, scratch, add_to_c, bias, used_k);
}

template void head_product<float>(int64_t, int64_t, int64_t, MatView<float>, MatView<float>, float*,
                                  int64_t, std::vector<float>&, bool, const float*, const int64_t*);
template void head_product<double>(int64_t, int64_t, int64_t, MatView<double>, MatView<double>,
                                   double*, int64_t, std::vector<double>&, bool, const double*,
                                   const int64_t*);
template void head_product_on<float>(HeadKernel, int64_t, int64_t, int64_t, MatView<float>,
                                     MatView<float>, float*, int64_t, std::vector<float>&, bool,
                                     const float*, const int64_t*);
template void head_product_on<double>(HeadKernel, int64_t, int64_t, int64_t, MatView<double>,
                                      MatView<double>, double*, int64_t, std::vector<double>&, bool,
                                      const double*, const int64_t*);

}  // namespace vmoe::cpu
