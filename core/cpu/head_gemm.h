// Products of one attention head's small matrices ([N, N] by [N, Dh] and the like; N ~ 50,
// Dh ~ 16-64), for the fused attention kernels. At these sizes OpenBLAS's per-call packing and
// its zero fill of C cost more than the arithmetic, so f32 on AVX2 + FMA (or AVX-512) runs a
// register-blocked kernel (each element one FMA chain over each piece of 256 along k, the pieces'
// sums added in order); everything else goes through BLAS. gemm (core/cpu/gemm.cpp) also sends
// it the model's skinny and narrow products.
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

// c [m, n] (rows ldc apart) = a [m, k] b [k, n]; with add_to_c c += a b; with a bias [n]
// (not with add_to_c), c = a b + the bias in every row (a linear layer). `scratch` (the
// caller's, reused across calls) holds b when it must be repacked with unit column stride.
// Given used_k [k], the vector kernels leave out the terms of every p with used_k[p] < 0, where
// the caller promises a's column p or b's row p to be zero: each FMA chain then skips terms that
// would add exact zeros, so the bits are those of the whole product.
template <class T>
void head_product(int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b, T* c, int64_t ldc,
                  std::vector<T>& scratch, bool add_to_c = false, const T* bias = nullptr,
                  const int64_t* used_k = nullptr);

// The f32 kernels, narrowest first: BLAS, AVX2 + FMA (8 lanes), AVX-512 (16 lanes; chosen at
// run time where the CPU has it). The two vector kernels give the same bits: each element is
// the same FMA chains over k in order.
enum class HeadKernel { blas, avx2, avx512 };
// The widest kernel this build and CPU run: the one head_product takes for f32.
HeadKernel head_kernel();
bool head_kernel_available(HeadKernel kernel);
// head_product through `kernel` (f64 takes BLAS whatever the kernel); a kernel that is not
// available throws std::invalid_argument. For tests that compare the kernels.
template <class T>
void head_product_on(HeadKernel kernel, int64_t m, int64_t n, int64_t k, MatView<T> a, MatView<T> b,
                     T* c, int64_t ldc, std::vector<T>& scratch, bool add_to_c = false,
                     const T* bias = nullptr, const int64_t* used_k = nullptr);

}  // namespace vmoe::cpu
