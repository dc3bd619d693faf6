// Launchers of the CUDA backend's elementwise and row kernels (core/cuda/kernels.cu), on f32
// device pointers and a stream. Their math is core/cuda/kernel_bodies.h. Every launcher checks
// the launch with VMOE_CUDA_CHECK.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/op_kinds.h"

namespace vmoe::cuda {

// Threads per block of the row kernels: a power of two (the tree reduction needs one).
inline constexpr int kRowThreads = 256;

// y = op(x) over n elements.
void launch_unary(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t stream);
// gx = gy * op'(x) given y = op(x).
void launch_unary_backward(UnaryOp op, const float* x, const float* y, const float* gy, float* gx,
                           int64_t n, cudaStream_t stream);
// Softmax (or log-softmax) of each of `rows` rows of n values.
void launch_softmax_rows(const float* x, float* y, int64_t rows, int64_t n, SoftmaxKind kind,
                         cudaStream_t stream);
// Layer norm of each of `rows` rows of d values; mean and rstd get one value per row.
void launch_layer_norm_rows(const float* x, const float* scale, const float* bias, float eps,
                            float* y, float* mean, float* rstd, int64_t rows, int64_t d,
                            cudaStream_t stream);

}  // namespace vmoe::cuda
