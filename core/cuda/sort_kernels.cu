// The CUDA backend's sorts, through CUB: the stable (key, position) radix sort of the
// deterministic scatter-add (index_bodies.h) and the stable per-row argsort. Kept thin: only
// CUB calls and the argsort's column/offset setup (argsort_columns_body, host-tested); what CUB
// itself does is checked on a GPU (test/gpu). CUB's radix sort treats -0.0 and +0.0 as equal and
// keeps their input order, as std::stable_sort with < does; NaN keys sort by their bits (the CPU
// backend gives NaN no defined place either).
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_block.cuh"
#include "core/cuda/index_bodies.h"
#include "core/cuda/index_kernels.h"

namespace vmoe::cuda {

namespace {

__global__ void argsort_columns_kernel(int64_t* columns, int64_t* offsets, int64_t rows,
                                       int64_t n) {
  argsort_columns_body(grid_pos(), columns, offsets, rows, n);
}

template <class K>
__global__ void argsort_words_kernel(const K* x, sort_word_t<K>* words, int64_t n,
                                     bool descending) {
  argsort_words_body(grid_pos(), x, words, n, descending);
}

// CUB's stable segmented sort of `rows` segments of n (word, column) pairs, ascending; with
// temp == nullptr only sets temp_bytes. Instantiated for the two word sizes only: the key
// types and orders map onto them (sort_word), which keeps CUB's many kernels compiled twice,
// not eight times.
template <class U>
cudaError_t segmented_sort(void* temp, size_t& temp_bytes, const U* words_in, U* words_out,
                           const int64_t* columns_in, int64_t* columns_out, int64_t rows, int64_t n,
                           const int64_t* offsets, cudaStream_t stream) {
  return cub::DeviceSegmentedSort::StableSortPairs(temp, temp_bytes, words_in, words_out,
                                                   columns_in, columns_out, rows * n, rows, offsets,
                                                   offsets + 1, stream);
}

}  // namespace

template <class K, class P>
size_t sort_pairs_temp_bytes(int64_t n, int end_bit) {
  size_t bytes = 0;
  VMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const K*>(nullptr), static_cast<K*>(nullptr),
      static_cast<const P*>(nullptr), static_cast<P*>(nullptr), n, 0, end_bit));
  return bytes;
}

template <class K, class P>
void launch_sort_pairs(void* temp, size_t temp_bytes, const K* keys_in, K* keys_out,
                       const P* values_in, P* values_out, int64_t n, int end_bit,
                       cudaStream_t stream) {
  if (n == 0) return;
  VMOE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, values_in,
                                                  values_out, n, 0, end_bit, stream));
}

template <class K>
size_t argsort_temp_bytes(int64_t rows, int64_t n) {
  using U = sort_word_t<K>;
  size_t bytes = 0;
  VMOE_CUDA_CHECK(segmented_sort<U>(nullptr, bytes, nullptr, nullptr, nullptr, nullptr, rows, n,
                                    nullptr, nullptr));
  return bytes;
}

template <class K>
void launch_argsort(const K* x, int64_t* out, int64_t rows, int64_t n, bool descending, void* words,
                    int64_t* columns, int64_t* offsets, void* temp, size_t temp_bytes,
                    cudaStream_t stream) {
  using U = sort_word_t<K>;
  if (rows * n == 0) return;
  const unsigned blocks = unsigned(element_blocks(rows * n));
  U* words_in = static_cast<U*>(words);
  U* words_out = words_in + rows * n;
  argsort_words_kernel<<<blocks, kElementThreads, 0, stream>>>(x, words_in, rows * n, descending);
  VMOE_CUDA_CHECK(cudaGetLastError());
  argsort_columns_kernel<<<blocks, kElementThreads, 0, stream>>>(columns, offsets, rows, n);
  VMOE_CUDA_CHECK(cudaGetLastError());
  VMOE_CUDA_CHECK(segmented_sort<U>(temp, temp_bytes, words_in, words_out, columns, out, rows, n,
                                    offsets, stream));
}

template size_t sort_pairs_temp_bytes<uint32_t, int32_t>(int64_t, int);
template size_t sort_pairs_temp_bytes<uint64_t, int64_t>(int64_t, int);
template void launch_sort_pairs<uint32_t, int32_t>(void*, size_t, const uint32_t*, uint32_t*,
                                                   const int32_t*, int32_t*, int64_t, int,
                                                   cudaStream_t);
template void launch_sort_pairs<uint64_t, int64_t>(void*, size_t, const uint64_t*, uint64_t*,
                                                   const int64_t*, int64_t*, int64_t, int,
                                                   cudaStream_t);

#define VMOE_ARGSORT_LAUNCHERS(K)                                                              \
  template size_t argsort_temp_bytes<K>(int64_t, int64_t);                                     \
  template void launch_argsort<K>(const K*, int64_t*, int64_t, int64_t, bool, void*, int64_t*, \
                                  int64_t*, void*, size_t, cudaStream_t);
VMOE_ARGSORT_LAUNCHERS(float)
VMOE_ARGSORT_LAUNCHERS(double)
VMOE_ARGSORT_LAUNCHERS(int32_t)
VMOE_ARGSORT_LAUNCHERS(int64_t)
#undef VMOE_ARGSORT_LAUNCHERS

}  // namespace vmoe::cuda
