// Launchers of the CUDA backend's elementwise, row and reduction kernels (kernels.cu,
// row_kernels.cu, reduce_kernels.cu), on device pointers, sizes, a strides POD
// (strided_index.h) and a stream. Their math is in kernel_bodies.h, row_bodies.h and
// reduce_bodies.h. Templated launchers exist for T = float, double, BFloat16 (bf16 stored, f32
// computed); cumsum also for int32_t and int64_t. Every launcher checks the launch with
// VMOE_CUDA_CHECK and returns at once for empty work.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"  // kRowThreads and the launch geometry
#include "core/cuda/kernel_error_slot.h"
#include "core/cuda/reduce_bodies.h"  // ReduceSumPlan, the chunk counts
#include "core/cuda/strided_index.h"
#include "core/dtype.h"
#include "core/op_kinds.h"

namespace vmoe::cuda {

// ---- elementwise (kernels.cu) ----

// dst = src over strided views of n elements, converted from ts to td (any two dtypes; through
// double as the CPU backend). idx: tensor 0 src, 1 dst.
void launch_copy(const void* src, DType ts, void* dst, DType td, const StridedIndex<2>& idx,
                 int64_t n, cudaStream_t stream);
// dst = value (converted to t as the CPU backend does) over a strided view of n elements.
void launch_fill(void* dst, DType t, double value, const StridedIndex<1>& idx, int64_t n,
                 cudaStream_t stream);
// out = a op b; idx: tensor 0 a, 1 b, 2 out.
template <class T>
void launch_binary(BinaryOp op, const T* a, const T* b, T* out, const StridedIndex<3>& idx,
                   int64_t n, cudaStream_t stream);
// y = op(x) over n contiguous elements.
template <class T>
void launch_unary(UnaryOp op, const T* x, T* y, int64_t n, cudaStream_t stream);
// gx = gy * op'(x) given y = op(x), contiguous.
template <class T>
void launch_unary_backward(UnaryOp op, const T* x, const T* y, const T* gy, T* gx, int64_t n,
                           cudaStream_t stream);
// y = gelu(x + bias), x and y [n / (rows * f), rows, f], bias [n / (rows * f), f].
template <class T>
void launch_bias_gelu(const T* x, const T* bias, T* y, int64_t rows, int64_t f, int64_t n,
                      cudaStream_t stream);
// gx = gy * gelu'(x + bias), shapes as launch_bias_gelu.
template <class T>
void launch_bias_gelu_backward(const T* x, const T* bias, const T* gy, T* gx, int64_t rows,
                               int64_t f, int64_t n, cudaStream_t stream);
// dst += alpha * src; idx: tensor 0 dst, 1 src.
template <class T>
void launch_add_scaled(T* dst, const T* src, double alpha, const StridedIndex<2>& idx, int64_t n,
                       cudaStream_t stream);
// dst *= s over a strided view.
template <class T>
void launch_scale(T* dst, double s, const StridedIndex<1>& idx, int64_t n, cudaStream_t stream);

// ---- rows, one block each (row_kernels.cu); all contiguous [rows, n] ----

template <class T>
void launch_softmax_rows(const T* x, T* y, int64_t rows, int64_t n, SoftmaxKind kind,
                         cudaStream_t stream);
template <class T>
void launch_softmax_backward_rows(const T* y, const T* gy, T* gx, int64_t rows, int64_t n,
                                  SoftmaxKind kind, cudaStream_t stream);
// mean, rstd [rows]; scale, bias, mean, rstd in compute_t<T> (f32 for bf16 x).
template <class T>
void launch_layer_norm_rows(const T* x, const compute_t<T>* scale, const compute_t<T>* bias,
                            double eps, T* y, compute_t<T>* mean, compute_t<T>* rstd, int64_t rows,
                            int64_t d, cudaStream_t stream);
// gx only; the parameter gradients are launch_layer_norm_param_grads.
template <class T>
void launch_layer_norm_backward_rows(const T* x, const compute_t<T>* scale,
                                     const compute_t<T>* mean, const compute_t<T>* rstd,
                                     const T* gy, T* gx, int64_t rows, int64_t d,
                                     cudaStream_t stream);
// logits [b, c], labels i32 [b] -> loss [b], dlogits [b, c]; bad labels into `slot`.
template <class T>
void launch_softmax_xent_rows(const T* logits, const int32_t* labels, T* loss, T* dlogits,
                              int64_t b, int64_t c, KernelErrorSlot* slot, cudaStream_t stream);
template <class T>
void launch_sigmoid_xent_rows(const T* logits, const int32_t* labels, T* loss, T* dlogits,
                              int64_t b, int64_t c, KernelErrorSlot* slot, cudaStream_t stream);
// x [rows, n] -> values [rows], arg i64 [rows].
template <class T>
void launch_max_last_rows(const T* x, T* values, int64_t* arg, int64_t rows, int64_t n,
                          cudaStream_t stream);

// ---- reductions and scans (reduce_kernels.cu) ----

// out[0] += sum of x's n squares, in double; partials: sum_squares_blocks(n) doubles of
// device scratch.
template <class T>
void launch_sum_squares(const T* x, int64_t n, double* partials, double* out, cudaStream_t stream);
// out = sums of x (contiguous) over the plan's reduced axes; partials: reduce_sum_scratch(plan)
// doubles of device scratch (nullptr when that is 0).
template <class T>
void launch_reduce_sum(const T* x, T* out, const ReduceSumPlan& plan, double* partials,
                       cudaStream_t stream);
// x, out [outer, n, inner] contiguous.
template <class T>
void launch_cumsum(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool reverse,
                   cudaStream_t stream);
// gscale, gbias [d] = column sums over rows of gy * xhat and gy; partials:
// 2 * layer_norm_param_chunks(d, rows) * d values of compute_t<T> of device scratch.
template <class T>
void launch_layer_norm_param_grads(const T* x, const compute_t<T>* mean, const compute_t<T>* rstd,
                                   const T* gy, compute_t<T>* partials, compute_t<T>* gscale,
                                   compute_t<T>* gbias, int64_t rows, int64_t d,
                                   cudaStream_t stream);

}  // namespace vmoe::cuda
