// Rows of the fused bias + GELU and of its gradient (core/cpu/elementwise.cpp), as the
// bias_gelu kernels compute them: the experts' fused MLP (core/cpu/expert_mlp.cpp) runs the
// same arithmetic on its rows, so that both give the same bits. f32 takes AVX-512 where the
// CPU has it.
#pragma once
#include <cstdint>

namespace vmoe::cpu {

// y[r] = gelu(x[r] + bias) for `rows` contiguous rows of f features (T: float or double).
template <class T>
void bias_gelu_rows(const T* x, const T* bias, T* y, int64_t rows, int64_t f);
// gx[r] = gy[r] * gelu'(x[r] + bias).
template <class T>
void bias_gelu_backward_rows(const T* x, const T* bias, const T* gy, T* gx, int64_t rows,
                             int64_t f);

}  // namespace vmoe::cpu
