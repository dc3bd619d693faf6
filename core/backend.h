// A backend is a table of kernels for one device type. Ops (core/ops_*.cpp) check arguments,
// allocate outputs and call these; kernels may assume checked, contiguous inputs unless a
// comment says "strided". The CPU backend (core/cpu/) is the reference for every other one.
#pragma once
#include <cstdint>

#include "core/rng.h"
#include "core/tensor.h"

namespace vmoe {

enum class BinaryOp : uint8_t { add, sub, mul, div };
enum class UnaryOp : uint8_t { neg, exp, log, tanh, sigmoid, relu, sqrt, square, gelu, normal_cdf };

// C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch; row-major; strides in elements.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1, beta = 0;
  DType dtype = DType::f32;
};

struct Backend {
  // strided -> strided copy with dtype conversion; shapes equal.
  void (*copy)(const Tensor& src, const Tensor& dst);
  void (*fill)(const Tensor& dst, double value);  // strided
  // a, b: strided views already broadcast to out's shape.
  void (*binary)(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out);
  void (*unary)(UnaryOp op, const Tensor& x, const Tensor& out);
  // gx = gy * d op(x)/dx, given y = op(x).
  void (*unary_backward)(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                         const Tensor& gx);
  void (*add_scaled)(const Tensor& dst, const Tensor& src, double alpha);  // dst += alpha*src
  void (*scale)(const Tensor& dst, double s);
  double (*sum_squares)(const Tensor& x);
  // out keeps x's rank with size 1 on reduced axes.
  void (*reduce_sum)(const Tensor& x, const Tensor& out);
  // Max over the last axis of x [R, N] -> values [R], arg i64 [R].
  void (*max_last)(const Tensor& x, const Tensor& values, const Tensor& arg);
  void (*gemm)(const GemmArgs& args);
  // Over the last axis; log selects log-softmax.
  void (*softmax)(const Tensor& x, const Tensor& y, bool log);
  void (*softmax_backward)(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log);
  // x [R, D]; mean, rstd [R] f64-free (same dtype as x).
  void (*layer_norm)(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                     const Tensor& y, const Tensor& mean, const Tensor& rstd);
  void (*layer_norm_backward)(const Tensor& x, const Tensor& scale, const Tensor& mean,
                              const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                              const Tensor& gscale, const Tensor& gbias);
  // logits [B, C], labels [B] -> per-example loss [B]; dlogits = d(mean loss)/dlogits.
  void (*softmax_xent)(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                       const Tensor& dlogits);
  void (*sigmoid_xent)(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                       const Tensor& dlogits);
  void (*dropout_mask)(const Tensor& mask, double rate, RngKey key, uint64_t offset);
  void (*random_fill)(const Tensor& out, RngKey key, uint64_t offset, bool normal, double lo,
                      double hi);
  void (*patches)(const Tensor& images, int64_t p, const Tensor& out, bool backward);
  void (*index_select)(const Tensor& x, const Tensor& idx, const Tensor& out);
  void (*index_add)(const Tensor& src, const Tensor& idx, const Tensor& out);  // out += ...
  void (*gather)(const Tensor& x, const Tensor& idx, const Tensor& out);
  void (*gather_backward)(const Tensor& gy, const Tensor& idx, const Tensor& gx);
  void (*topk)(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices);
  void (*argsort)(const Tensor& x, bool descending, const Tensor& out);
  // x viewed as [outer, n, inner]; reverse runs from the end (the backward of cumsum).
  void (*cumsum)(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool reverse,
                 const Tensor& out);
  void (*one_hot)(const Tensor& idx, const Tensor& out);
};

const Backend& backend_for(Device device);
const Backend& cpu_backend();

}  // namespace vmoe
