// Launchers of the CUDA backend's random-number, patch, indexing, routing, sort and optimizer
// kernels (index_kernels.cu, sort_kernels.cu, optim_kernels.cu): raw device pointers, sizes and
// the stream, no Tensor (nvcc compiles the .cu files as C++17). Their math is index_bodies.h and
// optim_bodies.h. Templates over the element types, instantiated in the .cu files for:
//   E (raw words): uint8_t, uint16_t, uint32_t, uint64_t;  T: float, double, BFloat16
//   (optimizers: float, double);  I: int32_t, int64_t;  (K, P): (uint32_t, int32_t),
//   (uint64_t, int64_t);  argsort keys: float, double, int32_t, int64_t.
// Every launcher checks its launch with VMOE_CUDA_CHECK and does nothing for empty work.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/cuda/index_bodies.h"
#include "core/cuda/kernel_error_slot.h"
#include "core/cuda/optim_bodies.h"

namespace vmoe::cuda {

// ---- random numbers ----
template <class T>
void launch_dropout_mask(T* mask, int64_t n, double rate, compute_t<T> keep_scale, uint64_t seed,
                         uint64_t rng_stream, uint64_t offset, cudaStream_t stream);
template <class T>
void launch_random_fill(T* out, int64_t n, uint64_t seed, uint64_t rng_stream, uint64_t offset,
                        bool normal, double lo, double hi, cudaStream_t stream);

// ---- patches: images [B, H, W, C] <-> patches [B, (H/p)*(W/p), p*p*C] ----
template <class E>
void launch_patches(E* images, E* patches, int64_t b, int64_t h, int64_t w, int64_t c, int64_t p,
                    bool to_images, cudaStream_t stream);

// ---- indexing ----
template <class I>
void launch_check_range(const I* values, int64_t n, int64_t lo, int64_t hi, KernelErrorOp op,
                        KernelErrorSlot* slot, cudaStream_t stream);
template <class E, class I>
void launch_index_select(const E* x, const I* idx, E* out, int64_t m, int64_t row, int64_t rows,
                         KernelErrorSlot* slot, cudaStream_t stream);
template <class E, class I>
void launch_gather(const E* x, const I* idx, E* out, int64_t rows, int64_t n, int64_t k,
                   KernelErrorSlot* slot, cudaStream_t stream);
template <class T, class I>
void launch_gather_backward_direct(const T* gy, const I* idx, T* gx, int64_t rows, int64_t n,
                                   int64_t k, cudaStream_t stream);
template <class T, class I>
void launch_one_hot(const I* idx, T* out, int64_t n, int64_t classes, KernelErrorSlot* slot,
                    cudaStream_t stream);
template <class T>
void launch_topk(const T* x, T* values, int64_t* indices, int64_t rows, int64_t n, int64_t k,
                 cudaStream_t stream);

// ---- deterministic scatter-add: keys, stable sort, segments, ordered sums ----
template <class I, class K, class P>
void launch_index_add_keys(const I* idx, int64_t m, int64_t rows, K* keys, P* pos,
                           KernelErrorSlot* slot, cudaStream_t stream);
template <class I, class K, class P>
void launch_gather_backward_keys(const I* idx, int64_t rows, int64_t k, int64_t n, K* keys, P* pos,
                                 cudaStream_t stream);
template <class K, class P>
void launch_segment_starts(const K* sorted_keys, int64_t m, int64_t dests, P* starts,
                           cudaStream_t stream);
template <class T, class P>
void launch_segment_add(const T* src, const P* sorted_pos, const P* starts, T* out, int64_t dests,
                        int64_t row, bool accumulate, cudaStream_t stream);

// ---- CUB sorts (sort_kernels.cu) ----
// A stable ascending radix sort of n (key, value) pairs over key bits [0, end_bit). The
// *_temp_bytes functions give the scratch the sort needs (CUB's query; nothing is launched).
template <class K, class P>
size_t sort_pairs_temp_bytes(int64_t n, int end_bit);
template <class K, class P>
void launch_sort_pairs(void* temp, size_t temp_bytes, const K* keys_in, K* keys_out,
                       const P* values_in, P* values_out, int64_t n, int end_bit,
                       cudaStream_t stream);
// Stable argsort of each of `rows` rows of n keys: out [rows, n] i64. Scratch: words
// [2 * rows * n] of sort_word_t<K> (index_bodies.h), columns [rows * n], offsets [rows + 1],
// temp (argsort_temp_bytes).
// bf16 argsort keys widened to f32 (index_kernels.cu).
void launch_widen_bf16(const BFloat16* x, float* y, int64_t n, cudaStream_t stream);
template <class K>
size_t argsort_temp_bytes(int64_t rows, int64_t n);
template <class K>
void launch_argsort(const K* x, int64_t* out, int64_t rows, int64_t n, bool descending, void* words,
                    int64_t* columns, int64_t* offsets, void* temp, size_t temp_bytes,
                    cudaStream_t stream);

// ---- slot assignment: the five steps of index_bodies.h ----
// Scratch: sequence [k * tokens] i32, counts [groups * tiles_per_group * E] i32,
// kept [groups * E] i64.
void launch_assign_slots(const SlotGrid& grid, const int64_t* experts, const int64_t* order,
                         int64_t* combine, int64_t* dispatch, int64_t* load, int32_t* sequence,
                         int32_t* counts, int64_t* kept, KernelErrorSlot* slot,
                         cudaStream_t stream);

// ---- fused optimizer updates (optim_kernels.cu) ----
template <class T>
void launch_adamw(T* w, const T* g, T* m, T* v, const uint8_t* mask, int64_t n,
                  const AdamWScalars<T>& scalars, const double* grad_norm_sq, double max_norm,
                  cudaStream_t stream);
template <class T>
void launch_sgd(T* w, const T* g, T* trace, const uint8_t* mask, int64_t n,
                const SgdScalars<T>& scalars, const double* grad_norm_sq, double max_norm,
                cudaStream_t stream);

}  // namespace vmoe::cuda
