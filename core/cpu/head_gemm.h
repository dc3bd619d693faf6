// Products of one attention head's small matrices ([N, N] by [N, Dh] and the like; N ~ 50,
// Dh ~ 16-64), for the fused attention kernels. At these sizes OpenBLAS's per-call packing and
// its zero fill of C cost more than the arithmetic, so f32 on AVX2 + FMA runs a register-blocked
// kernel (each element one FMA chain over k, in order); everything else goes through BLAS.
#pragma once
#include <cstdint>
#include <vector>

namespace vmoe::cpu {

// A strided matrix: element (i, j) at data[i * rs + j * cs]; one of rs, cs is 1.
template <class T>
struct MatView {
  const T* data;
  int64_t rs, cs;
};

// c [m, n] (rows ldc apart) = a [m, k] b [k, n]. `scratch` (the caller's, reused across calls)
// holds b when it must be repacked with unit column stride.
template <class T>
void head_product(int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b, T* c, int64_t ldc,
                  std::vector<T>& scratch);

}  // namespace vmoe::cpu
