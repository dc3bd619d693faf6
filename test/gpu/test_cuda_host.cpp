// The CUDA backend's host logic, tested without a GPU: the row-major -> column-major mapping of
// the GEMMs (core/cuda/gemm.h), the kernel error messages (the CPU backend's wording), the
// chunks of pinned staging copies, the one-line error for a missing device, and cuBLASLt opened
// on first use only.
#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/cublaslt_library.h"
#include "core/cuda/cuda_context.h"
#include "core/cuda/cuda_devices.h"
#include "core/cuda/gemm.h"
#include "core/cuda/pinned_staging.h"
#include "core/ops.h"

using namespace vmoe;

namespace {

// Row-major reference: C[b] = alpha op(A[b]) op(B[b]) + beta C[b], the contract of GemmArgs.
void row_major_gemm(const GemmArgs& g, const std::vector<double>& a, const std::vector<double>& b,
                    std::vector<double>& c) {
  for (int64_t t = 0; t < g.batch; ++t)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p) {
          const double av =
              g.trans_a ? a[t * g.stride_a + p * g.lda + i] : a[t * g.stride_a + i * g.lda + p];
          const double bv =
              g.trans_b ? b[t * g.stride_b + j * g.ldb + p] : b[t * g.stride_b + p * g.ldb + j];
          s += av * bv;
        }
        double& out = c[t * g.stride_c + i * g.ldc + j];
        out = g.alpha * s + g.beta * out;
      }
}

// Element (r, c) of op(matrix) for a column-major LtMatrix, as cuBLASLt reads it.
double lt_element(const double* base, const cuda::LtMatrix& m, bool transpose, int64_t r,
                  int64_t c) {
  return transpose ? base[c + r * m.ld] : base[r + c * m.ld];
}

// What cuBLASLt computes for an LtGemm (column-major), on the host.
void column_major_gemm_on_host(const cuda::LtGemm& lt, double alpha, double beta) {
  const double* first = static_cast<const double*>(lt.first);
  const double* second = static_cast<const double*>(lt.second);
  double* c = static_cast<double*>(lt.c);
  for (int64_t t = 0; t < lt.batch; ++t)
    for (int64_t i = 0; i < lt.m; ++i)
      for (int64_t j = 0; j < lt.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < lt.k; ++p)
          s += lt_element(first + t * lt.first_layout.batch_stride, lt.first_layout,
                          lt.transpose_first, i, p) *
               lt_element(second + t * lt.second_layout.batch_stride, lt.second_layout,
                          lt.transpose_second, p, j);
        double& out = c[t * lt.c_layout.batch_stride + i + j * lt.c_layout.ld];
        out = alpha * s + beta * out;
      }
}

// The stored shape of an operand must be what its op needs, and cuBLASLt's ld >= rows.
void check_layout(const cuda::LtMatrix& m, bool transpose, int64_t op_rows, int64_t op_cols) {
  CHECK(m.rows == (transpose ? op_cols : op_rows));
  CHECK(m.cols == (transpose ? op_rows : op_cols));
  CHECK(m.ld >= m.rows);
}

}  // namespace

TEST_CASE("cuda gemm layout: row-major GemmArgs map to a column-major cuBLASLt problem",
          "[cuda_host]") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t batch : {1, 3})
        for (int64_t pad : {0, 2}) {
          GemmArgs g;
          g.trans_a = ta;
          g.trans_b = tb;
          g.m = 4;
          g.n = 5;
          g.k = 3;
          g.batch = batch;
          // Leading dimensions of the stored row-major matrices, padded: views with gaps.
          g.lda = (ta ? g.m : g.k) + pad;
          g.ldb = (tb ? g.k : g.n) + pad;
          g.ldc = g.n + pad;
          g.stride_a = (ta ? g.k : g.m) * g.lda + pad;
          g.stride_b = (tb ? g.n : g.k) * g.ldb + pad;
          g.stride_c = g.m * g.ldc + pad;
          g.alpha = 0.5;
          g.beta = pad ? -2.0 : 0.0;
          g.dtype = DType::f64;
          std::vector<double> a(size_t(batch * g.stride_a)), b(size_t(batch * g.stride_b)),
              c(size_t(batch * g.stride_c));
          for (auto* vec : {&a, &b, &c})
            for (double& v : *vec)
              v = u(rng);
          std::vector<double> want = c, got = c;
          row_major_gemm(g, a, b, want);

          g.a = a.data();
          g.b = b.data();
          g.c = got.data();
          const cuda::LtGemm lt = cuda::column_major_gemm(g);
          CAPTURE(ta, tb, batch, pad);
          CHECK(lt.m == g.n);
          CHECK(lt.n == g.m);
          CHECK(lt.k == g.k);
          CHECK(lt.batch == batch);
          CHECK(lt.first == g.b);
          CHECK(lt.second == g.a);
          check_layout(lt.first_layout, lt.transpose_first, lt.m, lt.k);
          check_layout(lt.second_layout, lt.transpose_second, lt.k, lt.n);
          check_layout(lt.c_layout, false, lt.m, lt.n);
          column_major_gemm_on_host(lt, g.alpha, g.beta);
          // The same products summed in the same order: equal to the last bit, padding untouched.
          CHECK(got == want);
        }
}

TEST_CASE("cuda kernel errors: the slot's message is the CPU backend's", "[cuda_host]") {
  using cuda::KernelErrorOp;
  CHECK(cuda::format_kernel_error(cuda::KernelErrorSlot{}).empty());
  // The CPU's own message for the same error, word for word.
  const Tensor x = Tensor::zeros({5, 2}, DType::f32, kCpu);
  const Tensor idx = Tensor::from_vector<int64_t>({0, 1, 2, 9}, {4}, kCpu);
  std::string cpu_message;
  try {
    index_select(x, idx);
  } catch (const std::invalid_argument& e) {
    cpu_message = e.what();
  }
  REQUIRE(!cpu_message.empty());
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::index_select, 9, 3, -1, 5, 0}) == cpu_message);
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::index_select, 9, 3, -1, 5, 0}) ==
        "index_select: index 9 at position 3 is outside [-1, 5)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::gather, -2, 0, 0, 4, 0}) ==
        "gather: index -2 at position 0 is outside [0, 4)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::one_hot, 7, 1, 0, 3, 0}) ==
        "one_hot: index 7 at position 1 is outside [0, 3)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::softmax_xent, 10, 2, 0, 10, 0}) ==
        "softmax_cross_entropy: label 10 at position 2 is outside [0, 10)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::sigmoid_xent, -1, 0, 0, 3, 0}) ==
        "sigmoid_cross_entropy: label -1 at position 0 is outside [0, 3)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::assign_slots, 8, 5, 0, 8, 0}) ==
        "assign_slots: expert 8 at position 5 is outside [0, 8)");
  CHECK(cuda::format_kernel_error({1, KernelErrorOp::assign_slots_order, 100, 30, 0, 100, 0}) ==
        "assign_slots: position 100 at position 30 is outside [0, 100)");
}

TEST_CASE("cuda staging: a copy's chunks cover it exactly, alternating buffers", "[cuda_host]") {
  CHECK(cuda::staging_chunks(0, 8).empty());
  CHECK_THROWS_WITH(cuda::staging_chunks(10, 0), Catch::Contains("chunk_bytes must be > 0"));
  for (size_t bytes : {size_t(1), size_t(7), size_t(8), size_t(9), size_t(64), size_t(100)}) {
    CAPTURE(bytes);
    const std::vector<cuda::StagingChunk> chunks = cuda::staging_chunks(bytes, 8);
    CHECK(chunks.size() == (bytes + 7) / 8);
    size_t next = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      CHECK(chunks[i].offset == next);
      CHECK(chunks[i].bytes > 0);
      CHECK(chunks[i].bytes <= 8);
      CHECK(chunks[i].buffer == int(i % 2));
      next += chunks[i].bytes;
    }
    CHECK(next == bytes);
  }
}

TEST_CASE("cuda device: a machine without one gets a one-line error naming the device",
          "[cuda_host]") {
  const CudaDevices found = query_cuda_devices();
  if (found.devices.empty()) {
    CHECK_THROWS_WITH(backend_for(Device{DeviceType::cuda, 0}),
                      Catch::StartsWith("cuda:0 is not available: ") && !Catch::Contains("\n"));
    CHECK_THROWS_WITH(Tensor::zeros({2}, DType::f32, Device{DeviceType::cuda, 0}),
                      Catch::Contains("cuda:0 is not available"));
  } else {
    // With a device: it is reachable, and an index past the last one is refused by name.
    CHECK(std::string(backend_for(Device{DeviceType::cuda, 0}).name) == "cuda");
    const int past = int(found.devices.size());
    CHECK_THROWS_WITH(backend_for(Device{DeviceType::cuda, past}),
                      Catch::Contains("cuda:" + std::to_string(past)));
  }
}

namespace {
// Whether a file whose name contains `name` is mapped into this process.
bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}
}  // namespace

// ctest runs each case in its own process, so "not yet loaded" is this case's own doing.
TEST_CASE("cuda cublaslt: CPU work in a CUDA build never maps cuBLASLt", "[cuda_host]") {
  const Tensor a = Tensor::full({8, 16}, 0.5, DType::f32);
  const Tensor b = Tensor::full({16, 4}, 2.0, DType::f32);
  const Tensor c = matmul(a, b);
  CHECK(c.cpu().to_vector<float>()[3 * 4 + 2] == 16.0f);
  CHECK_FALSE(cuda::cublaslt_loaded());
  CHECK_FALSE(mapped("libcublasLt"));
}

TEST_CASE("cuda cublaslt: the first use opens the library the build's headers name",
          "[cuda_host]") {
  const cuda::CublasLtLibrary& lib = cuda::cublaslt();
  CHECK(cuda::cublaslt_loaded());
  CHECK(mapped(cuda::cublaslt_soname()));
  CHECK(std::string(lib.cublasLtGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED)) ==
        "CUBLAS_STATUS_NOT_SUPPORTED");
  CHECK(&cuda::cublaslt() == &lib);  // opened once
}
