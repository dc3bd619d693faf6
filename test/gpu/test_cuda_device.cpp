// The CUDA backend on a GPU: memory (caching allocator, pinned staging copies, their counts),
// the cuBLASLt GEMMs against the CPU backend, the kernel error slot. Hidden tests ([.][cuda]):
// they need a device, so ctest does not list them; test/gpu/check.sh runs `test_gpu "[cuda]"`,
// and without a device they fail at their first line, naming the device.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/streams.h"
#include "core/kernel_errors.h"
#include "core/tensor.h"
#include "core/transfer_counts.h"

using namespace vmoe;

namespace {

constexpr Device kCuda{DeviceType::cuda, 0};

// Device memory of `bytes` from the CUDA allocator, freed at scope exit.
struct DeviceBuffer {
  const Backend& backend;
  size_t bytes;
  void* p;
  DeviceBuffer(const Backend& b, size_t n) : backend(b), bytes(n), p(b.allocator->allocate(n)) {}
  ~DeviceBuffer() { backend.allocator->deallocate(p, bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// A host array in `dtype` (f32, f64 or bf16) of values in [-1, 1), and the same values as
// doubles (after bf16 rounding).
struct HostMatrix {
  std::vector<unsigned char> bytes;
  std::vector<double> values;
};

HostMatrix random_matrix(int64_t n, DType dtype, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  HostMatrix h;
  h.bytes.resize(size_t(n) * dtype_size(dtype));
  for (int64_t i = 0; i < n; ++i) {
    const float v = u(rng);
    if (dtype == DType::f32) {
      std::memcpy(h.bytes.data() + i * 4, &v, 4);
      h.values.push_back(v);
    } else if (dtype == DType::f64) {
      const double d = v;
      std::memcpy(h.bytes.data() + i * 8, &d, 8);
      h.values.push_back(d);
    } else {
      const BFloat16 b = to_bf16(v);
      std::memcpy(h.bytes.data() + i * 2, &b, 2);
      h.values.push_back(from_bf16(b));
    }
  }
  return h;
}

std::vector<double> as_doubles(const std::vector<unsigned char>& bytes, DType dtype) {
  const size_t n = bytes.size() / dtype_size(dtype);
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::f32) {
      float v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      out[i] = v;
    } else if (dtype == DType::f64) {
      std::memcpy(&out[i], bytes.data() + i * 8, 8);
    } else {
      BFloat16 b;
      std::memcpy(&b, bytes.data() + i * 2, 2);
      out[i] = from_bf16(b);
    }
  }
  return out;
}

// The row-major contract of GemmArgs in double, as the reference.
std::vector<double> reference_gemm(const GemmArgs& g, const std::vector<double>& a,
                                   const std::vector<double>& b, std::vector<double> c) {
  for (int64_t t = 0; t < g.batch; ++t)
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < g.k; ++p)
          s += (g.trans_a ? a[t * g.stride_a + p * g.lda + i] : a[t * g.stride_a + i * g.lda + p]) *
               (g.trans_b ? b[t * g.stride_b + j * g.ldb + p] : b[t * g.stride_b + p * g.ldb + j]);
        double& out = c[t * g.stride_c + i * g.ldc + j];
        out = g.alpha * s + g.beta * out;
      }
  return c;
}

}  // namespace

TEST_CASE("cuda memory: tensors round-trip through the pinned staging buffers, counted",
          "[.][cuda]") {
  const Backend& be = backend_for(kCuda);
  CHECK(std::string(be.name) == "cuda");
  // 5M + 3 floats: three 8 MiB staging chunks, the last one partial.
  const int64_t n = 5'000'003;
  std::vector<float> values(static_cast<size_t>(n));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (float& v : values)
    v = u(rng);
  const Tensor host = Tensor::from_vector(values, {n}, kCpu);
  const int64_t peak_before = be.allocator->stats().peak_in_use_bytes;
  TransferCounter counter(kCuda);
  const Tensor dev = host.to(kCuda);
  const Tensor back = dev.to(kCpu);
  const TransferCounts c = counter.now();
  CHECK(c.from_host == 1);
  CHECK(c.from_host_bytes == n * 4);
  CHECK(c.to_host == 1);
  CHECK(c.to_host_bytes == n * 4);
  CHECK(std::memcmp(back.data<float>(), values.data(), size_t(n) * 4) == 0);
  CHECK(be.allocator->stats().peak_in_use_bytes >= std::max<int64_t>(peak_before, n * 4));
  TransferCounter syncs(kCuda);
  be.synchronize();
  CHECK(syncs.now().synchronizations == 1);
}

TEST_CASE("cuda gemm: cuBLASLt against the row-major reference, every dtype and layout",
          "[.][cuda]") {
  const Backend& be = backend_for(kCuda);
  struct Types {
    DType in, out;
    // Normalised error bound: f32 / f64 accumulate k <= 40 products of |v| < 1 in another order
    // than the reference (a few ulps of the sum each); a bf16 output rounds to 8 bits.
    double tolerance;
  };
  const Types types[] = {{DType::f32, DType::f32, 1e-5},
                         {DType::f64, DType::f64, 1e-12},
                         {DType::bf16, DType::bf16, 1e-2},
                         {DType::bf16, DType::f32, 1e-5}};
  std::mt19937 rng(3);
  for (const Types& t : types)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t batch : {1, 4})
          for (int64_t pad : {0, 3}) {
            GemmArgs g;
            g.trans_a = ta;
            g.trans_b = tb;
            g.m = 37;
            g.n = 29;
            g.k = 40;
            g.batch = batch;
            g.lda = (ta ? g.m : g.k) + pad;
            g.ldb = (tb ? g.k : g.n) + pad;
            g.ldc = g.n + pad;
            g.stride_a = (ta ? g.k : g.m) * g.lda;
            g.stride_b = (tb ? g.n : g.k) * g.ldb;
            g.stride_c = g.m * g.ldc;
            g.alpha = 1.5;
            g.beta = pad ? 0.5 : 0.0;
            g.dtype = t.in;
            if (t.out != t.in) g.c_dtype = t.out;
            const HostMatrix a = random_matrix(batch * g.stride_a, t.in, rng);
            const HostMatrix b = random_matrix(batch * g.stride_b, t.in, rng);
            HostMatrix c = random_matrix(batch * g.stride_c, t.out, rng);
            const std::vector<double> want = reference_gemm(g, a.values, b.values, c.values);

            DeviceBuffer da(be, a.bytes.size()), db(be, b.bytes.size()), dc(be, c.bytes.size());
            be.copy_from_host(a.bytes.data(), da.p, a.bytes.size());
            be.copy_from_host(b.bytes.data(), db.p, b.bytes.size());
            be.copy_from_host(c.bytes.data(), dc.p, c.bytes.size());
            g.a = da.p;
            g.b = db.p;
            g.c = dc.p;
            be.gemm(g);
            be.copy_to_host(dc.p, c.bytes.data(), c.bytes.size());
            const std::vector<double> got = as_doubles(c.bytes, t.out);

            double max_diff = 0, max_ref = 0;
            for (size_t i = 0; i < want.size(); ++i) {
              max_diff = std::max(max_diff, std::abs(got[i] - want[i]));
              max_ref = std::max(max_ref, std::abs(want[i]));
            }
            CAPTURE(dtype_name(t.in), dtype_name(t.out), ta, tb, batch, pad);
            CHECK(max_diff / std::max(1.0, max_ref) <= t.tolerance);
          }
}

TEST_CASE("cuda gemm: k = 0 writes beta * C, an empty product", "[.][cuda]") {
  const Backend& be = backend_for(kCuda);
  GemmArgs g;
  g.m = 3;
  g.n = 4;
  g.k = 0;
  g.ldc = 4;
  g.dtype = DType::f32;
  std::vector<float> c(12, 7.0f);
  DeviceBuffer dc(be, 48);
  be.copy_from_host(c.data(), dc.p, 48);
  g.c = dc.p;
  be.gemm(g);  // beta 0: zeros
  be.copy_to_host(dc.p, c.data(), 48);
  CHECK(c == std::vector<float>(12, 0.0f));
}

TEST_CASE("cuda kernel errors: the slot is read once per check, thrown and cleared", "[.][cuda]") {
  backend_for(kCuda);
  check_kernel_errors(kCuda);  // nothing recorded before
  const cuda::KernelErrorSlot slot{1, cuda::KernelErrorOp::gather, 12, 4, 0, 10, 0};
  VMOE_CUDA_CHECK(
      cudaMemcpy(cuda::kernel_error_slot(), &slot, sizeof slot, cudaMemcpyHostToDevice));
  TransferCounter reads(kCuda);
  CHECK_THROWS_WITH(check_kernel_errors(kCuda),
                    "gather: index 12 at position 4 is outside [0, 10)");
  CHECK_NOTHROW(check_kernel_errors(kCuda));
  CHECK(reads.now().to_host == 2);
}
