// Tests of core/cpu/head_gemm.h: each kernel the CPU runs against a plain triple loop in f64, for
// every combination of transposed operands, row counts around the 4- and 8-row blocks and column
// counts around the 8-, 16- and 32-wide blocks (masked tails), with rows wider than the matrix;
// and the AVX2 and AVX-512 kernels against each other, bit for bit; and the CPU backend's gemm,
// which sends skinny f32 products (n or k <= 16) to these kernels, split between threads.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/backend.h"
#include "core/cpu/head_gemm.h"

using vmoe::cpu::head_product_on;
using vmoe::cpu::HeadKernel;
using vmoe::cpu::MatView;

namespace {

// A [rows, cols] matrix stored row-major with `pad` extra elements per row, or transposed
// (stored [cols, rows]); view() gives head_product's strided view of it.
template <class T>
struct Stored {
  std::vector<T> data;
  int64_t rows, cols, ld;
  bool transposed;
  Stored(int64_t r, int64_t c, bool t, std::mt19937& rng)
      : rows(r), cols(c), ld((t ? r : c) + 3), transposed(t) {
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    data.resize(static_cast<size_t>((t ? c : r) * ld));
    for (T& x : data)
      x = T(d(rng));
  }
  T at(int64_t i, int64_t j) const {
    return transposed ? data[size_t(j * ld + i)] : data[size_t(i * ld + j)];
  }
  MatView<T> view() const {
    return transposed ? MatView<T>{data.data(), 1, ld} : MatView<T>{data.data(), ld, 1};
  }
};

template <class T>
void check_product(HeadKernel kernel, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                   std::mt19937& rng) {
  CAPTURE(int(kernel), m, n, k, ta, tb);
  const Stored<T> a(m, k, ta, rng), b(k, n, tb, rng);
  const int64_t ldc = n + 5;
  std::vector<T> c(static_cast<size_t>(m * ldc), T(7)), pack;
  head_product_on<T>(kernel, m, n, k, a.view(), b.view(), c.data(), ldc, pack);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t p = 0; p < k; ++p)
        want += double(a.at(i, p)) * double(b.at(p, j));
      worst = std::max(worst, std::abs(double(c[size_t(i * ldc + j)]) - want));
    }
    // The row padding beyond n is left alone (masked stores).
    for (int64_t j = n; j < ldc; ++j)
      CHECK(c[size_t(i * ldc + j)] == T(7));
  }
  CHECK(worst <= (sizeof(T) == 4 ? 1e-5 : 1e-13) * double(k));
}

// The kernels this CPU runs, head_product's own (the widest) last.
std::vector<HeadKernel> available_kernels() {
  std::vector<HeadKernel> kernels;
  for (HeadKernel k : {HeadKernel::blas, HeadKernel::avx2, HeadKernel::avx512})
    if (vmoe::cpu::head_kernel_available(k)) kernels.push_back(k);
  return kernels;
}

}  // namespace

TEMPLATE_TEST_CASE("head_product: every kernel, layout and block split against a plain loop",
                   "[head_gemm]", float, double) {
  std::mt19937 rng(3);
  for (HeadKernel kernel : available_kernels())
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t m : {1, 3, 4, 5, 8, 9, 12, 50})
          for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 50})
            for (int64_t k : {1, 16, 50})
              check_product<TestType>(kernel, m, n, k, ta, tb, rng);
}

TEST_CASE("head_product: the AVX2 and AVX-512 kernels give the same bits", "[head_gemm]") {
  if (!vmoe::cpu::head_kernel_available(HeadKernel::avx512)) {
    WARN("this CPU has no AVX-512: only the AVX2 kernel ran");
    return;
  }
  std::mt19937 rng(5);
  for (int64_t m : {1, 5, 13, 50})
    for (int64_t n : {3, 16, 18, 50})
      for (int64_t k : {1, 16, 50}) {
        CAPTURE(m, n, k);
        const Stored<float> a(m, k, false, rng), b(k, n, rng() % 2 == 0, rng);
        std::vector<float> c2(size_t(m * n)), c16(size_t(m * n)), pack;
        head_product_on<float>(HeadKernel::avx2, m, n, k, a.view(), b.view(), c2.data(), n, pack);
        head_product_on<float>(HeadKernel::avx512, m, n, k, a.view(), b.view(), c16.data(), n,
                               pack);
        CHECK(c2 == c16);
      }
}

TEST_CASE("cpu gemm: skinny f32 products (the router's shapes) on 1 and 2 threads", "[head_gemm]") {
  // n or k at most 16 takes head_product with the rows split between threads; the others
  // stay on BLAS. Every layout against the f64 loop; 1 and 2 threads give the same bits.
  std::mt19937 rng(11);
  const vmoe::Backend& cpu = vmoe::cpu_backend();
  struct Shape3 {
    int64_t m, n, k;
  };
  // [T, D] x [D, E] logits, their input gradient (k = E) and weight gradient (m = D, k = T),
  // a head of 10 classes, a patch embedding of 16 pixels, rows not a multiple of 8 and a
  // product just past the skinny width (BLAS).
  for (Shape3 s : {Shape3{6400, 8, 64}, Shape3{6400, 64, 8}, Shape3{64, 8, 6400},
                   Shape3{131, 10, 64}, Shape3{1001, 64, 16}, Shape3{3, 16, 5}, Shape3{77, 17, 17}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(s.m, s.n, s.k, ta, tb);
        const Stored<float> a(s.m, s.k, ta, rng), b(s.k, s.n, tb, rng);
        auto run = [&](int threads) {
          std::vector<float> c(size_t(s.m * (s.n + 2)), 7.0f);
          vmoe::GemmArgs g;
          g.trans_a = ta, g.trans_b = tb;
          g.m = s.m, g.n = s.n, g.k = s.k;
          g.a = a.data.data(), g.b = b.data.data(), g.c = c.data();
          g.lda = a.ld, g.ldb = b.ld, g.ldc = s.n + 2;
          const int before = omp_get_max_threads();
          omp_set_num_threads(threads);
          cpu.gemm(g);
          omp_set_num_threads(before);
          return c;
        };
        const std::vector<float> c1 = run(1), c2 = run(2);
        CHECK(c1 == c2);
        double worst = 0;
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.n; ++j) {
            double want = 0;
            for (int64_t p = 0; p < s.k; ++p)
              want += double(a.at(i, p)) * double(b.at(p, j));
            worst = std::max(worst, std::abs(double(c1[size_t(i * (s.n + 2) + j)]) - want));
          }
          CHECK(c1[size_t(i * (s.n + 2) + s.n)] == 7.0f);  // beyond n: left alone
        }
        CHECK(worst <= 2e-6 * double(s.k));
      }
}
