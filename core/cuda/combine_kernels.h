// Launchers of the CUDA MoE combine kernels (combine_kernels.cu) on device pointers and a
// stream; their math is combine_bodies.h. T: float, double. Each checks its launch with
// VMOE_CUDA_CHECK and does nothing for empty work.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace vmoe::cuda {

// out [N, D] = per token, the weighted sum of its choices' rows of y [R, D].
template <class T>
void launch_combine(const T* y, const T* weights, const int64_t* rows, T* out, int64_t n, int64_t d,
                    int64_t k, int64_t r, cudaStream_t stream);
// weighted [N * k, D] = weights[a] * gout[a / k]: the rows the scatter into y's gradient sums.
template <class T>
void launch_combine_weighted_rows(const T* weights, const T* gout, T* weighted, int64_t n,
                                  int64_t d, int64_t k, cudaStream_t stream);
// gweights [N * k] = gout[a / k] . y[rows[a]] (0 for a dropped choice).
template <class T>
void launch_combine_weight_grad(const T* y, const int64_t* rows, const T* gout, T* gweights,
                                int64_t n, int64_t d, int64_t k, int64_t r, cudaStream_t stream);

}  // namespace vmoe::cuda
