// Tests of core/cpu/head_gemm.h: each kernel the CPU runs against a plain triple loop in f64, for
// every combination of transposed operands, row counts around the 4- and 8-row blocks and column
// counts around the 8-, 16- and 32-wide blocks (masked tails), with rows wider than the matrix;
// and the AVX2 and AVX-512 kernels against each other, bit for bit; a transposed b against the
// same b stored plain, bit for bit; and the CPU backend's gemm, which sends skinny f32 products
// (n or k <= 16) to these kernels, split between threads.
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

// With add_to_c, c starts at 7 and must end at 7 + a b.
template <class T>
void check_product(HeadKernel kernel, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                   std::mt19937& rng, bool add_to_c = false) {
  CAPTURE(int(kernel), m, n, k, ta, tb, add_to_c);
  const Stored<T> a(m, k, ta, rng), b(k, n, tb, rng);
  const int64_t ldc = n + 5;
  std::vector<T> c(static_cast<size_t>(m * ldc), T(7)), pack;
  head_product_on<T>(kernel, m, n, k, a.view(), b.view(), c.data(), ldc, pack, add_to_c);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = add_to_c ? 7.0 : 0.0;
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

TEMPLATE_TEST_CASE("head_product: k in several pieces, and adding to c", "[head_gemm]", float,
                   double) {
  // k past 256 runs in pieces whose sums are added to c; add_to_c adds the first one too.
  std::mt19937 rng(4);
  for (HeadKernel kernel : available_kernels())
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t m : {5, 16})
          for (int64_t n : {9, 40})
            for (int64_t k : {7, 256, 257, 600})
              for (bool add : {false, true})
                check_product<TestType>(kernel, m, n, k, ta, tb, rng, add);
}

TEST_CASE("head_product: the AVX2 and AVX-512 kernels give the same bits", "[head_gemm]") {
  if (!vmoe::cpu::head_kernel_available(HeadKernel::avx512)) {
    WARN("this CPU has no AVX-512: only the AVX2 kernel ran");
    return;
  }
  std::mt19937 rng(5);
  for (int64_t m : {1, 5, 13, 50})
    for (int64_t n : {3, 16, 18, 50})
      for (int64_t k : {1, 16, 50, 600})
        for (int onto : {0, 1, 2}) {  // c = a b, c += a b, c = a b + bias
          CAPTURE(m, n, k, onto);
          const Stored<float> a(m, k, false, rng), b(k, n, rng() % 2 == 0, rng);
          std::vector<float> c2(size_t(m * n), 0.5f), c16(size_t(m * n), 0.5f), pack;
          const std::vector<float> bias(size_t(n), -0.75f);
          const float* row = onto == 2 ? bias.data() : nullptr;
          head_product_on<float>(HeadKernel::avx2, m, n, k, a.view(), b.view(), c2.data(), n, pack,
                                 onto == 1, row);
          head_product_on<float>(HeadKernel::avx512, m, n, k, a.view(), b.view(), c16.data(), n,
                                 pack, onto == 1, row);
          CHECK(c2 == c16);
        }
}

TEST_CASE("head_product: a transposed b gives the bits of the same b stored plain", "[head_gemm]") {
  // A transposed b is repacked (8 x 8 blocks transposed in registers, the edges one by one)
  // before the kernel runs as on a plain b: any element moved wrongly changes the bits.
  std::mt19937 rng(6);
  for (HeadKernel kernel : available_kernels()) {
    if (kernel == HeadKernel::blas) continue;
    for (int64_t m : {1, 9})
      for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 50})
        for (int64_t k : {1, 7, 8, 9, 16, 17, 50, 300}) {
          CAPTURE(int(kernel), m, n, k);
          const Stored<float> a(m, k, false, rng), bt(k, n, true, rng);
          Stored<float> b(k, n, false, rng);
          for (int64_t p = 0; p < k; ++p)
            for (int64_t j = 0; j < n; ++j)
              b.data[size_t(p * b.ld + j)] = bt.at(p, j);
          std::vector<float> c_plain(size_t(m * n), 0.0f), c_trans(size_t(m * n), 1.0f), pack;
          head_product_on<float>(kernel, m, n, k, a.view(), b.view(), c_plain.data(), n, pack,
                                 false);
          head_product_on<float>(kernel, m, n, k, a.view(), bt.view(), c_trans.data(), n, pack,
                                 false);
          CHECK(c_plain == c_trans);
        }
  }
}

TEST_CASE("head_product: rows of k left out by used_k give the bits of zeros there",
          "[head_gemm]") {
  // The experts' weight gradients skip their padding rows (used_k < 0): the FMA chains leave out
  // terms that would add exact zeros, the pieces of 256 stay where they are. With garbage in
  // both operands on those rows, the result is the bits of the product with zeros there; runs
  // at the start, the end and across a piece's edge, a piece with none used, and none at all.
  std::mt19937 rng(8);
  for (HeadKernel kernel : available_kernels()) {
    if (kernel == HeadKernel::blas) continue;
    for (int64_t k : {1, 9, 300, 700})
      for (int pattern = 0; pattern < 4; ++pattern) {
        const int64_t m = 11, n = 40;
        CAPTURE(int(kernel), k, pattern);
        std::vector<int64_t> used(static_cast<size_t>(k));
        for (int64_t p = 0; p < k; ++p) {
          const bool gap = pattern == 0   ? p % 7 >= 5
                           : pattern == 1 ? (p >= 250 && p < 520) || p == 0
                           : pattern == 2 ? false
                                          : true;
          used[size_t(p)] = gap ? -1 : p;
        }
        const Stored<float> a(k, m, true, rng);  // a^T: a weight gradient's layout
        Stored<float> b(k, n, false, rng), a_zero = a, b_zero = b;
        for (int64_t p = 0; p < k; ++p) {
          if (used[size_t(p)] >= 0) continue;
          for (int64_t i = 0; i < m; ++i)
            a_zero.data[size_t(i * a_zero.ld + p)] = 0.0f;
          for (int64_t j = 0; j < n; ++j)
            b_zero.data[size_t(p * b_zero.ld + j)] = 0.0f;
        }
        // a's stored [m, k] rows seen as [k, m]^T = [m, k]: the view of a^T.
        const MatView<float> av{a.data.data(), a.ld, 1}, az{a_zero.data.data(), a_zero.ld, 1};
        std::vector<float> skipped(size_t(m * n), 3.0f), whole(size_t(m * n), 4.0f), pack;
        head_product_on<float>(kernel, m, n, k, av, b.view(), skipped.data(), n, pack, false,
                               nullptr, used.data());
        head_product_on<float>(kernel, m, n, k, az, b_zero.view(), whole.data(), n, pack, false);
        CHECK(skipped == whole);
      }
  }
}

TEST_CASE("cpu gemm: skinny and narrow f32 products on 1 and 2 threads", "[head_gemm]") {
  // n or k at most 16 (and, on AVX-512, n <= 256 with k or m <= 256) take head_product: the rows
  // split between threads, or a batch one product per thread; the others stay on BLAS. Every
  // layout against the f64 loop, beta 0 and 1 and a bias; 1 and 2 threads give the same bits.
  std::mt19937 rng(11);
  const vmoe::Backend& cpu = vmoe::cpu_backend();
  struct Shape3 {
    int64_t m, n, k, batch = 1;
  };
  // [T, D] x [D, E] logits, their input gradient (k = E) and weight gradient (m = D, k = T),
  // a head of 10 classes, a patch embedding of 16 pixels, rows not a multiple of 8, a product
  // just past the skinny width; a narrow layer [T, D] x [D, 3D], its input gradient (k = 3D),
  // its weight gradient (k = T, three pieces of k), weight gradients with k split in chunks
  // between threads (wider and taller than wide), deep products taller than wide (one, and a
  // batch of 3: run transposed), per-expert products (a batch of 4), and one just past the
  // narrow width (BLAS).
  for (Shape3 s :
       {Shape3{6400, 8, 64}, Shape3{6400, 64, 8}, Shape3{64, 8, 6400}, Shape3{131, 10, 64},
        Shape3{1001, 64, 16}, Shape3{3, 16, 5}, Shape3{77, 17, 17}, Shape3{700, 192, 64},
        Shape3{700, 64, 192}, Shape3{64, 192, 700}, Shape3{24, 40, 2500}, Shape3{70, 30, 3001},
        Shape3{60, 20, 600}, Shape3{60, 20, 600, 3}, Shape3{90, 40, 24, 4}, Shape3{40, 257, 30}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int onto : {0, 1, 2}) {  // c = a b, c += a b (beta 1), c = a b + bias
          const double beta = onto == 1 ? 1.0 : 0.0;
          CAPTURE(s.m, s.n, s.k, s.batch, ta, tb, onto);
          std::vector<float> bias(size_t(s.n));
          for (int64_t j = 0; j < s.n; ++j)
            bias[size_t(j)] = 0.25f * float(j % 7) - 0.5f;
          const int64_t ldc = s.n + 2, c_size = s.m * ldc;
          std::vector<Stored<float>> a, b;
          for (int64_t i = 0; i < s.batch; ++i) {
            a.emplace_back(s.m, s.k, ta, rng);
            b.emplace_back(s.k, s.n, tb, rng);
          }
          // One buffer per operand, the products one stored matrix apart.
          std::vector<float> a_all, b_all;
          for (int64_t i = 0; i < s.batch; ++i) {
            a_all.insert(a_all.end(), a[size_t(i)].data.begin(), a[size_t(i)].data.end());
            b_all.insert(b_all.end(), b[size_t(i)].data.begin(), b[size_t(i)].data.end());
          }
          auto run = [&](int threads) {
            std::vector<float> c(size_t(s.batch * c_size), 7.0f);
            vmoe::GemmArgs g;
            g.trans_a = ta, g.trans_b = tb;
            g.m = s.m, g.n = s.n, g.k = s.k, g.batch = s.batch, g.beta = beta;
            if (onto == 2) g.bias = bias.data();
            g.a = a_all.data(), g.b = b_all.data(), g.c = c.data();
            g.lda = a[0].ld, g.ldb = b[0].ld, g.ldc = ldc;
            g.stride_a = int64_t(a[0].data.size()), g.stride_b = int64_t(b[0].data.size());
            g.stride_c = c_size;
            const int before = omp_get_max_threads();
            omp_set_num_threads(threads);
            cpu.gemm(g);
            omp_set_num_threads(before);
            return c;
          };
          const std::vector<float> c1 = run(1), c2 = run(2);
          CHECK(c1 == c2);
          double worst = 0;
          for (int64_t t = 0; t < s.batch; ++t)
            for (int64_t i = 0; i < s.m; ++i) {
              for (int64_t j = 0; j < s.n; ++j) {
                double want = onto == 1 ? 7.0 : (onto == 2 ? double(bias[size_t(j)]) : 0.0);
                for (int64_t p = 0; p < s.k; ++p)
                  want += double(a[size_t(t)].at(i, p)) * double(b[size_t(t)].at(p, j));
                const double got = c1[size_t(t * c_size + i * ldc + j)];
                worst = std::max(worst, std::abs(got - want));
              }
              CHECK(c1[size_t(t * c_size + i * ldc + s.n)] == 7.0f);  // beyond n: left alone
            }
          CHECK(worst <= 2e-6 * double(s.k + 8));
        }
}
