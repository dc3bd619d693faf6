// The CUDA backend's GEMM: cuBLASLt matmuls on the compute stream. f32 in f32 (TF32 tensor
// cores only with VMOE_ALLOW_TF32=1: the tests compare with the CPU in full f32), bf16 inputs
// with f32 accumulation and a bf16 or f32 output (GemmArgs::c_dtype), f64 in f64 (the suite's
// gradient checks). The descriptors
// and the heuristic's algorithm are made once per shape and kept; the workspace comes from the
// device allocator once.
#include "core/cuda/gemm.h"

#include <cublasLt.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "core/cuda/cublas_check.h"
#include "core/cuda/cublaslt_library.h"
#include "core/cuda/cuda_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/entries.h"
#include "core/cuda/streams.h"

namespace vmoe::cuda {

LtGemm column_major_gemm(const GemmArgs& g) {
  LtGemm lt;
  lt.m = g.n;
  lt.n = g.m;
  lt.k = g.k;
  lt.batch = g.batch;
  lt.transpose_first = g.trans_b;
  lt.transpose_second = g.trans_a;
  lt.first = g.b;
  lt.second = g.a;
  lt.c = g.c;
  // Row-major B is k x n (n x k when transposed): column-major n x k (k x n), ld kept.
  lt.first_layout =
      g.trans_b ? LtMatrix{g.k, g.n, g.ldb, g.stride_b} : LtMatrix{g.n, g.k, g.ldb, g.stride_b};
  // Row-major A is m x k (k x m when transposed): column-major k x m (m x k).
  lt.second_layout =
      g.trans_a ? LtMatrix{g.m, g.k, g.lda, g.stride_a} : LtMatrix{g.k, g.m, g.lda, g.stride_a};
  lt.c_layout = LtMatrix{g.n, g.m, g.ldc, g.stride_c};
  return lt;
}

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS recommends for Hopper

struct Types {
  cudaDataType_t data;  // of A and B
  cudaDataType_t c;     // of C (and D)
  cublasComputeType_t compute;
  cudaDataType_t scale;
};

bool tf32_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("VMOE_ALLOW_TF32");
    return env != nullptr && std::strcmp(env, "1") == 0;
  }();
  return allowed;
}

DType c_dtype_of(const GemmArgs& g) {
  return g.c_dtype.value_or(g.dtype);
}

// f32 x f32 -> f32, bf16 x bf16 -> bf16 or f32 (accumulated in f32 either way), f64 -> f64.
Types types_of(const GemmArgs& g) {
  const DType c = c_dtype_of(g);
  switch (g.dtype) {
    case DType::f32:
      if (c != DType::f32) break;
      return {CUDA_R_32F, CUDA_R_32F,
              tf32_allowed() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::bf16:
      if (c != DType::bf16 && c != DType::f32) break;
      return {CUDA_R_16BF, c == DType::f32 ? CUDA_R_32F : CUDA_R_16BF, CUBLAS_COMPUTE_32F,
              CUDA_R_32F};
    case DType::f64:
      if (c != DType::f64) break;
      return {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    default:
      break;
  }
  throw std::invalid_argument(std::string("cuda gemm: inputs ") + dtype_name(g.dtype) +
                              " with output " + dtype_name(c) +
                              " are not supported (expected f32 -> f32, bf16 -> bf16 or f32, "
                              "f64 -> f64)");
}

// The largest power of two (at most 256) that divides the address: what the heuristic must
// assume about a view at an offset into a 256-byte aligned block.
uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0)
    a /= 2;
  return a;
}

// Everything the descriptors and the chosen algorithm depend on.
using PlanKey = std::tuple<int, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, const LtMatrix& m, int64_t batch) {
  cublasLtMatrixLayout_t layout = nullptr;
  VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatrixLayoutCreate(&layout, type, uint64_t(m.rows),
                                                          uint64_t(m.cols), m.ld));
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    const int64_t stride = m.batch_stride;
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return layout;
}

std::string problem_text(const GemmArgs& g) {
  return std::string(dtype_name(g.dtype)) + " m=" + std::to_string(g.m) +
         " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " batch=" + std::to_string(g.batch) + (g.trans_a ? " A^T" : "") +
         (g.trans_b ? " B^T" : "");
}

// The cuBLASLt handle, the workspace and the plans of the process's device. Kept for the life of
// the process (the runtime may be gone at exit). One GEMM at a time: the plans and the
// workspace are shared.
class Gemms {
 public:
  void run(const GemmArgs& g) {
    std::lock_guard lock(mutex_);
    if (!handle_) {
      VMOE_CUBLAS_CHECK(cublaslt().cublasLtCreate(&handle_));
      workspace_ = device_allocator().allocate(kWorkspaceBytes);
    }
    const Types t = types_of(g);
    const LtGemm lt = column_major_gemm(g);
    const Plan& plan = plan_for(g, t, lt);
    const cudaStream_t stream = compute_stream();
    if (t.scale == CUDA_R_64F) {
      const double alpha = g.alpha, beta = g.beta;
      matmul(plan, &alpha, &beta, lt, stream);
    } else {
      const float alpha = float(g.alpha), beta = float(g.beta);
      matmul(plan, &alpha, &beta, lt, stream);
    }
  }

 private:
  void matmul(const Plan& p, const void* alpha, const void* beta, const LtGemm& lt,
              cudaStream_t stream) {
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmul(handle_, p.op, alpha, lt.first, p.first, lt.second,
                                                p.second, beta, lt.c, p.c, lt.c, p.c, &p.algo,
                                                workspace_, kWorkspaceBytes, stream));
  }

  const Plan& plan_for(const GemmArgs& g, const Types& t, const LtGemm& lt) {
    const PlanKey key{
        (int(g.dtype) * 16 + int(c_dtype_of(g))) * 2 + (t.compute == CUBLAS_COMPUTE_32F_FAST_TF32),
        g.trans_a,
        g.trans_b,
        g.m,
        g.n,
        g.k,
        g.batch,
        g.lda,
        g.ldb,
        g.ldc,
        g.stride_a,
        g.stride_b,
        g.stride_c,
        alignment_of(g.a),
        alignment_of(g.b),
        alignment_of(g.c)};
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;

    Plan p;
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulDescCreate(&p.op, t.compute, t.scale));
    const int32_t op_first = lt.transpose_first ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int32_t op_second = lt.transpose_second ? CUBLAS_OP_T : CUBLAS_OP_N;
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                                &op_first, sizeof op_first));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                                &op_second, sizeof op_second));
    p.first = make_layout(t.data, lt.first_layout, lt.batch);
    p.second = make_layout(t.data, lt.second_layout, lt.batch);
    p.c = make_layout(t.c, lt.c_layout, lt.batch);

    cublasLtMatmulPreference_t pref = nullptr;
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t workspace = kWorkspaceBytes;
    const uint32_t align_first = alignment_of(lt.first), align_second = alignment_of(lt.second),
                   align_c = alignment_of(lt.c);
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_first, sizeof align_first));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_second, sizeof align_second));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof align_c));
    VMOE_CUBLAS_CHECK(cublaslt().cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof align_c));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t status = cublaslt().cublasLtMatmulAlgoGetHeuristic(
        handle_, p.op, p.first, p.second, p.c, p.c, pref, 1, &result, &found);
    cublaslt().cublasLtMatmulPreferenceDestroy(pref);
    if (status != CUBLAS_STATUS_SUCCESS || found == 0)
      throw std::runtime_error("cuda gemm: cuBLASLt has no algorithm for " + problem_text(g) +
                               " (" + cublaslt().cublasLtGetStatusName(status) + ")");
    p.algo = result.algo;
    return plans_.emplace(key, p).first->second;
  }

  std::mutex mutex_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<PlanKey, Plan> plans_;
};

Gemms& gemms() {
  static Gemms* const g = new Gemms();
  return *g;
}

// C = beta * C for k = 0 (an empty sum): cuBLASLt needs k >= 1.
void scale_for_empty_sum(const GemmArgs& g) {
  if (g.beta == 1) return;
  if (g.beta != 0)
    throw std::invalid_argument("cuda gemm: k = 0 with beta = " + std::to_string(g.beta) +
                                " is not supported (expected beta 0 or 1)");
  const size_t elem = dtype_size(c_dtype_of(g));
  for (int64_t b = 0; b < g.batch; ++b) {
    char* c = static_cast<char*>(g.c) + size_t(b * g.stride_c) * elem;
    VMOE_CUDA_CHECK(cudaMemset2DAsync(c, size_t(g.ldc) * elem, 0, size_t(g.n) * elem, size_t(g.m),
                                      compute_stream()));
  }
}

}  // namespace

void gemm(const GemmArgs& args) {
  types_of(args);  // rejects unsupported dtypes even for empty products
  // The op layer fills C with the bias here (the table's gemm_adds_bias is false).
  if (args.bias) throw std::invalid_argument("cuda gemm: GemmArgs::bias is not supported");
  if (args.m == 0 || args.n == 0 || args.batch == 0) return;
  if (args.batch > INT32_MAX)
    throw std::invalid_argument("cuda gemm: batch " + std::to_string(args.batch) +
                                " exceeds cuBLASLt's int32 batch count");
  if (args.k == 0) {
    scale_for_empty_sum(args);
    return;
  }
  gemms().run(args);
}

}  // namespace vmoe::cuda
