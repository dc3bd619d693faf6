// The CUDA fused attention kernels: the phases of attention_bodies.h between block barriers,
// one thread per query (or key) row, tiles of the other side through shared memory.
#include <stdexcept>

#include "core/cuda/attention_bodies.h"
#include "core/cuda/attention_kernels.h"
#include "core/cuda/cuda_check.h"

namespace vmoe::cuda {

namespace {

template <class T>
__global__ void attention_forward_kernel(const T* q, const T* k, const T* v, T* out,
                                         compute_t<T>* lse, AttentionShape s, compute_t<T> scale) {
  using C = compute_t<T>;
  constexpr int64_t rows = attention_tile_rows<C>;
  __shared__ C k_tile[rows * kAttentionMaxHeadDim];
  __shared__ C v_tile[rows * kAttentionMaxHeadDim];
  AttentionForwardState<C> st;
  attention_forward_begin(blockIdx.x, threadIdx.x, q, s, scale, st);
  for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
    attention_load_kv(blockIdx.x, threadIdx.x, blockDim.x, k, v, s, key0, k_tile, v_tile);
    __syncthreads();
    attention_forward_update(blockIdx.x, threadIdx.x, s, key0, k_tile, v_tile, st);
    __syncthreads();  // the tiles are overwritten next
  }
  attention_forward_end(blockIdx.x, threadIdx.x, s, st, out, lse);
}

template <class T>
__global__ void attention_grad_q_kernel(const T* q, const T* k, const T* v, const T* out,
                                        const compute_t<T>* lse, const T* gout, T* gq,
                                        AttentionShape s, compute_t<T> scale) {
  using C = compute_t<T>;
  constexpr int64_t rows = attention_tile_rows<C>;
  __shared__ C k_tile[rows * kAttentionMaxHeadDim];
  __shared__ C v_tile[rows * kAttentionMaxHeadDim];
  AttentionGradQState<C> st;
  attention_grad_q_begin(blockIdx.x, threadIdx.x, q, out, lse, gout, s, scale, st);
  for (int64_t key0 = 0; key0 < s.n; key0 += rows) {
    attention_load_kv(blockIdx.x, threadIdx.x, blockDim.x, k, v, s, key0, k_tile, v_tile);
    __syncthreads();
    attention_grad_q_update(blockIdx.x, threadIdx.x, s, key0, k_tile, v_tile, st);
    __syncthreads();
  }
  attention_grad_q_end(blockIdx.x, threadIdx.x, s, scale, st, gq);
}

template <class T>
__global__ void attention_grad_kv_kernel(const T* q, const T* k, const T* v, const T* out,
                                         const compute_t<T>* lse, const T* gout, T* gk, T* gv,
                                         AttentionShape s, compute_t<T> scale) {
  using C = compute_t<T>;
  constexpr int64_t rows = attention_tile_rows<C>;
  __shared__ C q_tile[rows * kAttentionMaxHeadDim];
  __shared__ C go_tile[rows * kAttentionMaxHeadDim];
  __shared__ C lse_tile[rows];
  __shared__ C delta_tile[rows];
  const AttentionQueryTile<C> tile{q_tile, go_tile, lse_tile, delta_tile};
  AttentionGradKvState<C> st;
  attention_grad_kv_begin(blockIdx.x, threadIdx.x, k, v, s, st);
  for (int64_t q0 = 0; q0 < s.n; q0 += rows) {
    attention_load_queries(blockIdx.x, threadIdx.x, blockDim.x, q, out, lse, gout, s, q0, scale,
                           tile);
    __syncthreads();
    attention_grad_kv_update(blockIdx.x, threadIdx.x, s, q0, tile, st);
    __syncthreads();
  }
  attention_grad_kv_end(blockIdx.x, threadIdx.x, s, st, gk, gv);
}

unsigned attention_grid(const AttentionShape& s) {
  return unsigned(s.bh * attention_blocks_per_head(s.n));
}

template <class T>
void forward_as(const void* q, const void* k, const void* v, void* out, void* lse,
                const AttentionShape& s, double scale, cudaStream_t stream) {
  using C = compute_t<T>;
  attention_forward_kernel<T><<<attention_grid(s), unsigned(kAttentionBlockRows), 0, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
      static_cast<T*>(out), static_cast<C*>(lse), s, C(scale));
  VMOE_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void backward_as(const void* q, const void* k, const void* v, const void* out, const void* lse,
                 const void* gout, void* gq, void* gk, void* gv, const AttentionShape& s,
                 double scale, cudaStream_t stream) {
  using C = compute_t<T>;
  const T *tq = static_cast<const T*>(q), *tk = static_cast<const T*>(k),
          *tv = static_cast<const T*>(v), *to = static_cast<const T*>(out),
          *tg = static_cast<const T*>(gout);
  const C* tl = static_cast<const C*>(lse);
  attention_grad_q_kernel<T><<<attention_grid(s), unsigned(kAttentionBlockRows), 0, stream>>>(
      tq, tk, tv, to, tl, tg, static_cast<T*>(gq), s, C(scale));
  VMOE_CUDA_CHECK(cudaGetLastError());
  attention_grad_kv_kernel<T><<<attention_grid(s), unsigned(kAttentionBlockRows), 0, stream>>>(
      tq, tk, tv, to, tl, tg, static_cast<T*>(gk), static_cast<T*>(gv), s, C(scale));
  VMOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_attention_forward(DType dtype, const void* q, const void* k, const void* v, void* out,
                              void* lse, const AttentionShape& s, double scale,
                              cudaStream_t stream) {
  if (s.bh == 0 || s.n == 0) return;
  switch (dtype) {
    case DType::f32:
      return forward_as<float>(q, k, v, out, lse, s, scale, stream);
    case DType::f64:
      return forward_as<double>(q, k, v, out, lse, s, scale, stream);
    case DType::bf16:
      return forward_as<BFloat16>(q, k, v, out, lse, s, scale, stream);
    default:
      throw std::invalid_argument("launch_attention_forward: dtype must be f32, f64 or bf16");
  }
}

void launch_attention_backward(DType dtype, const void* q, const void* k, const void* v,
                               const void* out, const void* lse, const void* gout, void* gq,
                               void* gk, void* gv, const AttentionShape& s, double scale,
                               cudaStream_t stream) {
  if (s.bh == 0 || s.n == 0) return;
  switch (dtype) {
    case DType::f32:
      return backward_as<float>(q, k, v, out, lse, gout, gq, gk, gv, s, scale, stream);
    case DType::f64:
      return backward_as<double>(q, k, v, out, lse, gout, gq, gk, gv, s, scale, stream);
    case DType::bf16:
      return backward_as<BFloat16>(q, k, v, out, lse, gout, gq, gk, gv, s, scale, stream);
    default:
      throw std::invalid_argument("launch_attention_backward: dtype must be f32, f64 or bf16");
  }
}

}  // namespace vmoe::cuda
