// The CUDA backend's random-number, patch, indexing and routing kernels: each runs a
// __host__ __device__ body of index_bodies.h at its grid position (the tests run the same bodies
// on the host). Elementwise geometry (kElementThreads, element_blocks) from kernel_bodies.h.
#include <algorithm>
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/index_bodies.h"
#include "core/cuda/index_kernels.h"

namespace vmoe::cuda {

namespace {

unsigned blocks_for(int64_t n) {
  return unsigned(element_blocks(n));
}

// ---- kernels: one per body ----

template <class T>
__global__ void dropout_mask_kernel(T* mask, int64_t n, double rate, compute_t<T> keep_scale,
                                    uint64_t seed, uint64_t rng_stream, uint64_t offset) {
  dropout_mask_body(grid_pos(), mask, n, rate, keep_scale, seed, rng_stream, offset);
}

template <class T>
__global__ void random_fill_kernel(T* out, int64_t n, uint64_t seed, uint64_t rng_stream,
                                   uint64_t offset, bool normal, double lo, double hi) {
  random_fill_body(grid_pos(), out, n, seed, rng_stream, offset, normal, lo, hi);
}

template <class E>
__global__ void patches_kernel(E* images, E* patches, int64_t b, int64_t h, int64_t w, int64_t c,
                               int64_t p, bool to_images) {
  patches_body(grid_pos(), images, patches, b, h, w, c, p, to_images);
}

template <class I>
__global__ void check_range_kernel(const I* values, int64_t n, int64_t lo, int64_t hi,
                                   KernelErrorOp op, KernelErrorSlot* slot) {
  check_range_body(grid_pos(), values, n, lo, hi, op, slot);
}

template <class E, class I>
__global__ void index_select_kernel(const E* x, const I* idx, E* out, int64_t m, int64_t row,
                                    int64_t rows, KernelErrorSlot* slot) {
  index_select_body(grid_pos(), x, idx, out, m, row, rows, slot);
}

template <class E, class I>
__global__ void gather_kernel(const E* x, const I* idx, E* out, int64_t rows, int64_t n, int64_t k,
                              KernelErrorSlot* slot) {
  gather_body(grid_pos(), x, idx, out, rows, n, k, slot);
}

template <class T, class I>
__global__ void gather_backward_direct_kernel(const T* gy, const I* idx, T* gx, int64_t rows,
                                              int64_t n, int64_t k) {
  gather_backward_direct_body(grid_pos(), gy, idx, gx, rows, n, k);
}

template <class T, class I>
__global__ void one_hot_kernel(const I* idx, T* out, int64_t n, int64_t classes,
                               KernelErrorSlot* slot) {
  one_hot_body(grid_pos(), idx, out, n, classes, slot);
}

template <class T>
__global__ void topk_kernel(const T* x, T* values, int64_t* indices, int64_t rows, int64_t n,
                            int64_t k) {
  topk_body(grid_pos(), x, values, indices, rows, n, k);
}

template <class I, class K, class P>
__global__ void index_add_keys_kernel(const I* idx, int64_t m, int64_t rows, K* keys, P* pos,
                                      KernelErrorSlot* slot) {
  index_add_keys_body(grid_pos(), idx, m, rows, keys, pos, slot);
}

template <class I, class K, class P>
__global__ void gather_backward_keys_kernel(const I* idx, int64_t rows, int64_t k, int64_t n,
                                            K* keys, P* pos) {
  gather_backward_keys_body(grid_pos(), idx, rows, k, n, keys, pos);
}

template <class K, class P>
__global__ void segment_starts_kernel(const K* sorted_keys, int64_t m, int64_t dests, P* starts) {
  segment_starts_body(grid_pos(), sorted_keys, m, dests, starts);
}

template <class T, class P>
__global__ void segment_add_kernel(const T* src, const P* sorted_pos, const P* starts, T* out,
                                   int64_t dests, int64_t row, bool accumulate) {
  segment_add_body(grid_pos(), src, sorted_pos, starts, out, dests, row, accumulate);
}

__global__ void widen_bf16_kernel(const BFloat16* x, float* y, int64_t n) {
  widen_bf16_body(grid_pos(), x, y, n);
}

__global__ void assign_slots_prepare_kernel(SlotGrid grid, const int64_t* experts,
                                            const int64_t* order, int32_t* sequence,
                                            int64_t* combine, int64_t* dispatch,
                                            KernelErrorSlot* slot) {
  assign_slots_prepare_body(grid_pos(), grid, experts, order, sequence, combine, dispatch, slot);
}

__global__ void assign_slots_tile_count_kernel(SlotGrid grid, const int32_t* sequence,
                                               int32_t* counts) {
  assign_slots_tile_count_body(grid_pos(), grid, sequence, counts);
}

__global__ void assign_slots_tile_scan_kernel(SlotGrid grid, int32_t* counts, int64_t* kept) {
  assign_slots_tile_scan_body(grid_pos(), grid, counts, kept);
}

__global__ void assign_slots_place_kernel(SlotGrid grid, const int64_t* order,
                                          const int32_t* sequence, const int32_t* counts,
                                          int64_t* combine, int64_t* dispatch) {
  assign_slots_place_body(grid_pos(), grid, order, sequence, counts, combine, dispatch);
}

__global__ void assign_slots_load_kernel(SlotGrid grid, const int64_t* kept, int64_t* load) {
  assign_slots_load_body(grid_pos(), grid, kept, load);
}

}  // namespace

// ---- launchers ----

template <class T>
void launch_dropout_mask(T* mask, int64_t n, double rate, compute_t<T> keep_scale, uint64_t seed,
                         uint64_t rng_stream, uint64_t offset, cudaStream_t stream) {
  if (n == 0) return;
  dropout_mask_kernel<<<blocks_for(n), kElementThreads, 0, stream>>>(mask, n, rate, keep_scale,
                                                                     seed, rng_stream, offset);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_random_fill(T* out, int64_t n, uint64_t seed, uint64_t rng_stream, uint64_t offset,
                        bool normal, double lo, double hi, cudaStream_t stream) {
  if (n == 0) return;
  random_fill_kernel<<<blocks_for(n), kElementThreads, 0, stream>>>(out, n, seed, rng_stream,
                                                                    offset, normal, lo, hi);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class E>
void launch_patches(E* images, E* patches, int64_t b, int64_t h, int64_t w, int64_t c, int64_t p,
                    bool to_images, cudaStream_t stream) {
  const int64_t n = b * (h / p) * (w / p) * p * p * c;
  if (n == 0) return;
  patches_kernel<<<blocks_for(n), kElementThreads, 0, stream>>>(images, patches, b, h, w, c, p,
                                                                to_images);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class I>
void launch_check_range(const I* values, int64_t n, int64_t lo, int64_t hi, KernelErrorOp op,
                        KernelErrorSlot* slot, cudaStream_t stream) {
  if (n == 0) return;
  check_range_kernel<<<blocks_for(n), kElementThreads, 0, stream>>>(values, n, lo, hi, op, slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class E, class I>
void launch_index_select(const E* x, const I* idx, E* out, int64_t m, int64_t row, int64_t rows,
                         KernelErrorSlot* slot, cudaStream_t stream) {
  if (m * row == 0) return;
  index_select_kernel<<<blocks_for(m * row), kElementThreads, 0, stream>>>(x, idx, out, m, row,
                                                                           rows, slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class E, class I>
void launch_gather(const E* x, const I* idx, E* out, int64_t rows, int64_t n, int64_t k,
                   KernelErrorSlot* slot, cudaStream_t stream) {
  if (rows * k == 0) return;
  gather_kernel<<<blocks_for(rows * k), kElementThreads, 0, stream>>>(x, idx, out, rows, n, k,
                                                                      slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T, class I>
void launch_gather_backward_direct(const T* gy, const I* idx, T* gx, int64_t rows, int64_t n,
                                   int64_t k, cudaStream_t stream) {
  if (rows * n == 0) return;
  gather_backward_direct_kernel<<<blocks_for(rows * n), kElementThreads, 0, stream>>>(gy, idx, gx,
                                                                                      rows, n, k);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T, class I>
void launch_one_hot(const I* idx, T* out, int64_t n, int64_t classes, KernelErrorSlot* slot,
                    cudaStream_t stream) {
  if (n * classes == 0) return;
  one_hot_kernel<<<blocks_for(n * classes), kElementThreads, 0, stream>>>(idx, out, n, classes,
                                                                          slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_topk(const T* x, T* values, int64_t* indices, int64_t rows, int64_t n, int64_t k,
                 cudaStream_t stream) {
  if (rows == 0 || k == 0) return;
  // One thread per row: small blocks, so that a few hundred rows still spread over the SMs.
  constexpr int kThreads = 64;
  const unsigned blocks =
      unsigned(std::min<int64_t>((rows + kThreads - 1) / kThreads, kMaxElementBlocks));
  topk_kernel<<<blocks, kThreads, 0, stream>>>(x, values, indices, rows, n, k);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class I, class K, class P>
void launch_index_add_keys(const I* idx, int64_t m, int64_t rows, K* keys, P* pos,
                           KernelErrorSlot* slot, cudaStream_t stream) {
  if (m == 0) return;
  index_add_keys_kernel<<<blocks_for(m), kElementThreads, 0, stream>>>(idx, m, rows, keys, pos,
                                                                       slot);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class I, class K, class P>
void launch_gather_backward_keys(const I* idx, int64_t rows, int64_t k, int64_t n, K* keys, P* pos,
                                 cudaStream_t stream) {
  if (rows * k == 0) return;
  gather_backward_keys_kernel<<<blocks_for(rows * k), kElementThreads, 0, stream>>>(idx, rows, k, n,
                                                                                    keys, pos);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class K, class P>
void launch_segment_starts(const K* sorted_keys, int64_t m, int64_t dests, P* starts,
                           cudaStream_t stream) {
  segment_starts_kernel<<<blocks_for(dests + 1), kElementThreads, 0, stream>>>(sorted_keys, m,
                                                                               dests, starts);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T, class P>
void launch_segment_add(const T* src, const P* sorted_pos, const P* starts, T* out, int64_t dests,
                        int64_t row, bool accumulate, cudaStream_t stream) {
  if (dests * row == 0) return;
  segment_add_kernel<<<blocks_for(dests * row), kElementThreads, 0, stream>>>(
      src, sorted_pos, starts, out, dests, row, accumulate);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_widen_bf16(const BFloat16* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  widen_bf16_kernel<<<blocks_for(n), kElementThreads, 0, stream>>>(x, y, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

void launch_assign_slots(const SlotGrid& grid, const int64_t* experts, const int64_t* order,
                         int64_t* combine, int64_t* dispatch, int64_t* load, int32_t* sequence,
                         int32_t* counts, int64_t* kept, KernelErrorSlot* slot,
                         cudaStream_t stream) {
  const int64_t nk = grid.sequence_length(), dispatch_rows = grid.experts * grid.rows_per_expert;
  const int64_t prepared = std::max({nk, dispatch_rows, grid.tokens});
  if (prepared > 0) {
    assign_slots_prepare_kernel<<<blocks_for(prepared), kElementThreads, 0, stream>>>(
        grid, experts, order, sequence, combine, dispatch, slot);
    VMOE_CUDA_CHECK(cudaGetLastError());
  }
  if (nk > 0) {
    const int64_t tiles = grid.groups * grid.tiles_per_group;
    assign_slots_tile_count_kernel<<<blocks_for(tiles), kElementThreads, 0, stream>>>(
        grid, sequence, counts);
    VMOE_CUDA_CHECK(cudaGetLastError());
    assign_slots_tile_scan_kernel<<<blocks_for(grid.groups * grid.experts), kElementThreads, 0,
                                    stream>>>(grid, counts, kept);
    VMOE_CUDA_CHECK(cudaGetLastError());
    assign_slots_place_kernel<<<blocks_for(nk), kElementThreads, 0, stream>>>(
        grid, order, sequence, counts, combine, dispatch);
    VMOE_CUDA_CHECK(cudaGetLastError());
  }
  assign_slots_load_kernel<<<blocks_for(grid.experts), kElementThreads, 0, stream>>>(grid, kept,
                                                                                     load);
  VMOE_CUDA_CHECK(cudaGetLastError());
}

// ---- instantiations ----

#define VMOE_FLOATING_LAUNCHERS(T)                                                                 \
  template void launch_dropout_mask<T>(T*, int64_t, double, compute_t<T>, uint64_t, uint64_t,      \
                                       uint64_t, cudaStream_t);                                    \
  template void launch_random_fill<T>(T*, int64_t, uint64_t, uint64_t, uint64_t, bool, double,     \
                                      double, cudaStream_t);                                       \
  template void launch_topk<T>(const T*, T*, int64_t*, int64_t, int64_t, int64_t, cudaStream_t);   \
  template void launch_segment_add<T, int32_t>(const T*, const int32_t*, const int32_t*, T*,       \
                                               int64_t, int64_t, bool, cudaStream_t);              \
  template void launch_segment_add<T, int64_t>(const T*, const int64_t*, const int64_t*, T*,       \
                                               int64_t, int64_t, bool, cudaStream_t);              \
  template void launch_gather_backward_direct<T, int32_t>(const T*, const int32_t*, T*, int64_t,   \
                                                          int64_t, int64_t, cudaStream_t);         \
  template void launch_gather_backward_direct<T, int64_t>(const T*, const int64_t*, T*, int64_t,   \
                                                          int64_t, int64_t, cudaStream_t);         \
  template void launch_one_hot<T, int32_t>(const int32_t*, T*, int64_t, int64_t, KernelErrorSlot*, \
                                           cudaStream_t);                                          \
  template void launch_one_hot<T, int64_t>(const int64_t*, T*, int64_t, int64_t, KernelErrorSlot*, \
                                           cudaStream_t);
VMOE_FLOATING_LAUNCHERS(float)
VMOE_FLOATING_LAUNCHERS(double)
VMOE_FLOATING_LAUNCHERS(BFloat16)
#undef VMOE_FLOATING_LAUNCHERS

#define VMOE_WORD_LAUNCHERS(E)                                                                     \
  template void launch_patches<E>(E*, E*, int64_t, int64_t, int64_t, int64_t, int64_t, bool,       \
                                  cudaStream_t);                                                   \
  template void launch_index_select<E, int32_t>(const E*, const int32_t*, E*, int64_t, int64_t,    \
                                                int64_t, KernelErrorSlot*, cudaStream_t);          \
  template void launch_index_select<E, int64_t>(const E*, const int64_t*, E*, int64_t, int64_t,    \
                                                int64_t, KernelErrorSlot*, cudaStream_t);          \
  template void launch_gather<E, int32_t>(const E*, const int32_t*, E*, int64_t, int64_t, int64_t, \
                                          KernelErrorSlot*, cudaStream_t);                         \
  template void launch_gather<E, int64_t>(const E*, const int64_t*, E*, int64_t, int64_t, int64_t, \
                                          KernelErrorSlot*, cudaStream_t);
VMOE_WORD_LAUNCHERS(uint8_t)
VMOE_WORD_LAUNCHERS(uint16_t)
VMOE_WORD_LAUNCHERS(uint32_t)
VMOE_WORD_LAUNCHERS(uint64_t)
#undef VMOE_WORD_LAUNCHERS

#define VMOE_INDEX_LAUNCHERS(I)                                                           \
  template void launch_check_range<I>(const I*, int64_t, int64_t, int64_t, KernelErrorOp, \
                                      KernelErrorSlot*, cudaStream_t);                    \
  template void launch_index_add_keys<I, uint32_t, int32_t>(                              \
      const I*, int64_t, int64_t, uint32_t*, int32_t*, KernelErrorSlot*, cudaStream_t);   \
  template void launch_index_add_keys<I, uint64_t, int64_t>(                              \
      const I*, int64_t, int64_t, uint64_t*, int64_t*, KernelErrorSlot*, cudaStream_t);   \
  template void launch_gather_backward_keys<I, uint32_t, int32_t>(                        \
      const I*, int64_t, int64_t, int64_t, uint32_t*, int32_t*, cudaStream_t);            \
  template void launch_gather_backward_keys<I, uint64_t, int64_t>(                        \
      const I*, int64_t, int64_t, int64_t, uint64_t*, int64_t*, cudaStream_t);
VMOE_INDEX_LAUNCHERS(int32_t)
VMOE_INDEX_LAUNCHERS(int64_t)
#undef VMOE_INDEX_LAUNCHERS

template void launch_segment_starts<uint32_t, int32_t>(const uint32_t*, int64_t, int64_t, int32_t*,
                                                       cudaStream_t);
template void launch_segment_starts<uint64_t, int64_t>(const uint64_t*, int64_t, int64_t, int64_t*,
                                                       cudaStream_t);

}  // namespace vmoe::cuda
