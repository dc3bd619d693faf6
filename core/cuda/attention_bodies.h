// The bodies of the CUDA fused attention kernels (attention_kernels.cu), as __host__ __device__
// functions of (block, thread): the device runs them between barriers, the tests run the same
// phases on the host over the same grid (test/core/test_attention.cpp) and compare them with the
// CPU backend. Host and device code alike: nothing here needs Tensor.
//
// q, k, v, out, their gradients [B, H, N, Dh] views with a contiguous last axis (stored T: f32,
// f64 or bf16): q, k, v, gq, gk, gv in one layout (AttentionShape::in), out and gout in another
// (AttentionShape::out), e.g. read in place from a [B, N, 3, H, Dh] projection and written as
// [B, N, H, Dh]; lse [BH, N] contiguous in the compute type C (f32 for f32 and bf16, f64 for
// f64). Sized for ViT (N 50..577, Dh <= 128).
//
// Forward and dQ: one block per (head, tile of kAttentionBlockRows query rows), one thread per
// query row, its row state (scaled q, accumulators) in the thread's own memory. The block walks
// the head's keys in tiles of attention_tile_rows<C> rows that its threads copy into shared
// memory together; between copies each thread takes the tile into its row: forward by an online
// softmax (running max m and sum l, the accumulator rescaled by exp(m_old - m_new)), dQ with
// the probabilities exp(s - lse) recomputed from the forward's log-sum-exp.
// dK, dV: one block per (head, tile of key rows), one thread per key row, walking the query
// tiles. Every gradient element is summed by one thread in a fixed order: deterministic, no
// atomics.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/cuda/element_access.h"

namespace vmoe::cuda {

// Threads of a block = query (or key) rows a block owns.
inline constexpr int64_t kAttentionBlockRows = 64;
// The largest head dimension the kernels take (the row state lives in per-thread arrays).
inline constexpr int64_t kAttentionMaxHeadDim = 128;
// Rows of one shared-memory tile: 2 tiles of [rows, kAttentionMaxHeadDim] are 32 KiB in f32
// and in f64, inside the 48 KiB of static shared memory a block may have.
template <class C>
inline constexpr int64_t attention_tile_rows = sizeof(C) == 8 ? 16 : 32;

// Where the rows of the heads of a [B, H, N, Dh] view start: head `bh` of B*H is (item bh / H,
// head bh % H); strides in elements.
struct AttentionLayout {
  int64_t heads = 1;  // H
  int64_t item_stride = 0, head_stride = 0, row_stride = 0;
  // Offset of row `row` of head `bh`.
  VMOE_HD int64_t at(int64_t bh, int64_t row) const {
    return (bh / heads) * item_stride + (bh % heads) * head_stride + row * row_stride;
  }
};

struct AttentionShape {
  int64_t bh = 0, n = 0, dh = 0;  // heads (batch * heads), tokens, head dimension
  AttentionLayout in, out;        // of q, k, v and their gradients; of out and gout
};

// The shape of contiguous [BH, N, Dh] tensors.
inline AttentionShape contiguous_attention_shape(int64_t bh, int64_t n, int64_t dh) {
  const AttentionLayout packed{1, n * dh, 0, dh};
  return AttentionShape{bh, n, dh, packed, packed};
}

// The blocks of one head: ceil(n / kAttentionBlockRows).
VMOE_HD inline int64_t attention_blocks_per_head(int64_t n) {
  return (n + kAttentionBlockRows - 1) / kAttentionBlockRows;
}

// The head and row (query or key) a thread owns; row >= n: the thread only helps copy tiles.
struct AttentionRow {
  int64_t head = 0, row = 0;
  bool valid = false;
};
VMOE_HD inline AttentionRow attention_row(int64_t block, int64_t thread, int64_t n) {
  const int64_t per_head = attention_blocks_per_head(n);
  AttentionRow r;
  r.head = block / per_head;
  r.row = (block % per_head) * kAttentionBlockRows + thread;
  r.valid = r.row < n;
  return r;
}

// Copies rows [row0, row0 + rows) of a head's [n, dh] matrix (in `layout`) into tile [rows, dh]
// (compute type, scaled by `scale`; rows past n as zeros), the block's threads striding over
// elements.
template <class T, class C>
VMOE_HD inline void attention_copy_tile(const T* x, const AttentionLayout& layout,
                                        const AttentionShape& s, int64_t head, int64_t row0,
                                        C scale, C* tile, int64_t thread, int64_t threads) {
  const int64_t rows = attention_tile_rows<C>;
  for (int64_t e = thread; e < rows * s.dh; e += threads) {
    const int64_t j = e / s.dh, d = e % s.dh, r = row0 + j;
    tile[e] = r < s.n ? load(x[layout.at(head, r) + d]) * scale : C(0);
  }
}

// Loads one row of a head's [n, dh] matrix (in `layout`, times scale) into dst [dh].
template <class T, class C>
VMOE_HD inline void attention_load_row(const T* x, const AttentionLayout& layout,
                                       const AttentionShape& s, const AttentionRow& r, C scale,
                                       C* dst) {
  const T* src = x + layout.at(r.head, r.row);
  for (int64_t d = 0; d < s.dh; ++d)
    dst[d] = load(src[d]) * scale;
}

template <class C>
VMOE_HD inline C attention_dot(const C* a, const C* b, int64_t dh) {
  C acc = 0;
  for (int64_t d = 0; d < dh; ++d)
    acc += a[d] * b[d];
  return acc;
}

// ---- forward ----

template <class C>
struct AttentionForwardState {
  C q[kAttentionMaxHeadDim];    // the row of q times scale
  C acc[kAttentionMaxHeadDim];  // sum of exp(s_j - m) v_j over the keys so far
  C m, l;                       // running max of the scores and sum of exp(s_j - m)
};

template <class T, class C>
VMOE_HD inline void attention_forward_begin(int64_t block, int64_t thread, const T* q,
                                            const AttentionShape& s, C scale,
                                            AttentionForwardState<C>& st) {
  const AttentionRow r = attention_row(block, thread, s.n);
  st.m = C(-INFINITY);
  st.l = 0;
  for (int64_t d = 0; d < kAttentionMaxHeadDim; ++d)
    st.acc[d] = 0;
  if (r.valid) attention_load_row(q, s.in, s, r, scale, st.q);
}

// The block's threads copy keys and values [key0, key0 + tile rows) into shared memory.
template <class T, class C>
VMOE_HD inline void attention_load_kv(int64_t block, int64_t thread, int64_t threads, const T* k,
                                      const T* v, const AttentionShape& s, int64_t key0, C* k_tile,
                                      C* v_tile) {
  const int64_t head = attention_row(block, 0, s.n).head;
  attention_copy_tile(k, s.in, s, head, key0, C(1), k_tile, thread, threads);
  attention_copy_tile(v, s.in, s, head, key0, C(1), v_tile, thread, threads);
}

// The thread's query row takes the keys of the tile: the online softmax step.
template <class C>
VMOE_HD inline void attention_forward_update(int64_t block, int64_t thread, const AttentionShape& s,
                                             int64_t key0, const C* k_tile, const C* v_tile,
                                             AttentionForwardState<C>& st) {
  if (!attention_row(block, thread, s.n).valid) return;
  const int64_t rows = attention_tile_rows<C>;
  const int64_t keys = s.n - key0 < rows ? s.n - key0 : rows;
  C scores[rows];
  C tile_max = C(-INFINITY);
  for (int64_t j = 0; j < keys; ++j) {
    scores[j] = attention_dot(st.q, k_tile + j * s.dh, s.dh);
    tile_max = scores[j] > tile_max ? scores[j] : tile_max;
  }
  const C m_new = tile_max > st.m ? tile_max : st.m;
  // exp(-inf - m_new) is 0: the first tile starts from nothing.
  const C correction = std::exp(st.m - m_new);
  st.l *= correction;
  for (int64_t d = 0; d < s.dh; ++d)
    st.acc[d] *= correction;
  for (int64_t j = 0; j < keys; ++j) {
    const C p = std::exp(scores[j] - m_new);
    st.l += p;
    const C* vj = v_tile + j * s.dh;
    for (int64_t d = 0; d < s.dh; ++d)
      st.acc[d] += p * vj[d];
  }
  st.m = m_new;
}

template <class T, class C>
VMOE_HD inline void attention_forward_end(int64_t block, int64_t thread, const AttentionShape& s,
                                          const AttentionForwardState<C>& st, T* out, C* lse) {
  const AttentionRow r = attention_row(block, thread, s.n);
  if (!r.valid) return;
  T* dst = out + s.out.at(r.head, r.row);
  const C inv = C(1) / st.l;
  for (int64_t d = 0; d < s.dh; ++d)
    store(dst[d], st.acc[d] * inv);
  lse[r.head * s.n + r.row] = st.m + std::log(st.l);
}

// ---- backward: dQ (blocks over query rows, walking key tiles like the forward) ----

template <class C>
struct AttentionGradQState {
  C q[kAttentionMaxHeadDim];   // q times scale
  C go[kAttentionMaxHeadDim];  // the row of gout
  C dq[kAttentionMaxHeadDim];  // sum of ds_j k_j
  C lse, delta;                // the forward's log-sum-exp; delta = gout . out = sum_j p_j dp_j
};

template <class T, class C>
VMOE_HD inline void attention_grad_q_begin(int64_t block, int64_t thread, const T* q, const T* out,
                                           const C* lse, const T* gout, const AttentionShape& s,
                                           C scale, AttentionGradQState<C>& st) {
  const AttentionRow r = attention_row(block, thread, s.n);
  for (int64_t d = 0; d < kAttentionMaxHeadDim; ++d)
    st.dq[d] = 0;
  st.lse = st.delta = 0;
  if (!r.valid) return;
  attention_load_row(q, s.in, s, r, scale, st.q);
  attention_load_row(gout, s.out, s, r, C(1), st.go);
  const T* o = out + s.out.at(r.head, r.row);
  for (int64_t d = 0; d < s.dh; ++d)
    st.delta += st.go[d] * load(o[d]);
  st.lse = lse[r.head * s.n + r.row];
}

// ds_j = p_j (gout . v_j - delta), p_j = exp(q k_j * scale - lse); dq += ds_j k_j.
template <class C>
VMOE_HD inline void attention_grad_q_update(int64_t block, int64_t thread, const AttentionShape& s,
                                            int64_t key0, const C* k_tile, const C* v_tile,
                                            AttentionGradQState<C>& st) {
  if (!attention_row(block, thread, s.n).valid) return;
  const int64_t rows = attention_tile_rows<C>;
  const int64_t keys = s.n - key0 < rows ? s.n - key0 : rows;
  for (int64_t j = 0; j < keys; ++j) {
    const C* kj = k_tile + j * s.dh;
    const C p = std::exp(attention_dot(st.q, kj, s.dh) - st.lse);
    const C ds = p * (attention_dot(st.go, v_tile + j * s.dh, s.dh) - st.delta);
    for (int64_t d = 0; d < s.dh; ++d)
      st.dq[d] += ds * kj[d];
  }
}

template <class T, class C>
VMOE_HD inline void attention_grad_q_end(int64_t block, int64_t thread, const AttentionShape& s,
                                         C scale, const AttentionGradQState<C>& st, T* gq) {
  const AttentionRow r = attention_row(block, thread, s.n);
  if (!r.valid) return;
  T* dst = gq + s.in.at(r.head, r.row);
  for (int64_t d = 0; d < s.dh; ++d)
    store(dst[d], st.dq[d] * scale);  // through q * scale
}

// ---- backward: dK, dV (blocks over key rows, walking query tiles) ----

template <class C>
struct AttentionGradKvState {
  C k[kAttentionMaxHeadDim], v[kAttentionMaxHeadDim];    // this thread's key and value rows
  C dk[kAttentionMaxHeadDim], dv[kAttentionMaxHeadDim];  // sums over the queries so far
};

// Shared tiles of a query tile: q times scale and gout [rows, dh], lse and delta [rows].
template <class C>
struct AttentionQueryTile {
  C* q;
  C* go;
  C* lse;
  C* delta;
};

template <class T, class C>
VMOE_HD inline void attention_grad_kv_begin(int64_t block, int64_t thread, const T* k, const T* v,
                                            const AttentionShape& s, AttentionGradKvState<C>& st) {
  const AttentionRow r = attention_row(block, thread, s.n);
  for (int64_t d = 0; d < kAttentionMaxHeadDim; ++d)
    st.dk[d] = st.dv[d] = 0;
  if (!r.valid) return;
  attention_load_row(k, s.in, s, r, C(1), st.k);
  attention_load_row(v, s.in, s, r, C(1), st.v);
}

// The block's threads copy queries [q0, q0 + tile rows): q * scale, gout, lse and
// delta = gout . out (one thread per query row for the last two).
template <class T, class C>
VMOE_HD inline void attention_load_queries(int64_t block, int64_t thread, int64_t threads,
                                           const T* q, const T* out, const C* lse, const T* gout,
                                           const AttentionShape& s, int64_t q0, C scale,
                                           const AttentionQueryTile<C>& tile) {
  const int64_t head = attention_row(block, 0, s.n).head;
  const int64_t rows = attention_tile_rows<C>;
  attention_copy_tile(q, s.in, s, head, q0, scale, tile.q, thread, threads);
  attention_copy_tile(gout, s.out, s, head, q0, C(1), tile.go, thread, threads);
  for (int64_t j = thread; j < rows; j += threads) {
    const int64_t row = q0 + j;
    C delta = 0;
    if (row < s.n) {
      const T* o = out + s.out.at(head, row);
      const T* g = gout + s.out.at(head, row);
      for (int64_t d = 0; d < s.dh; ++d)
        delta += load(g[d]) * load(o[d]);
    }
    tile.delta[j] = delta;
    tile.lse[j] = row < s.n ? lse[head * s.n + row] : C(0);
  }
}

// dv += p_i gout_i; dk += ds_i q_i * scale, ds_i = p_i (gout_i . v - delta_i).
template <class C>
VMOE_HD inline void attention_grad_kv_update(int64_t block, int64_t thread, const AttentionShape& s,
                                             int64_t q0, const AttentionQueryTile<C>& tile,
                                             AttentionGradKvState<C>& st) {
  if (!attention_row(block, thread, s.n).valid) return;
  const int64_t rows = attention_tile_rows<C>;
  const int64_t queries = s.n - q0 < rows ? s.n - q0 : rows;
  for (int64_t i = 0; i < queries; ++i) {
    const C* qi = tile.q + i * s.dh;
    const C* gi = tile.go + i * s.dh;
    const C p = std::exp(attention_dot(qi, st.k, s.dh) - tile.lse[i]);
    const C ds = p * (attention_dot(gi, st.v, s.dh) - tile.delta[i]);
    for (int64_t d = 0; d < s.dh; ++d) {
      st.dv[d] += p * gi[d];
      st.dk[d] += ds * qi[d];
    }
  }
}

template <class T, class C>
VMOE_HD inline void attention_grad_kv_end(int64_t block, int64_t thread, const AttentionShape& s,
                                          const AttentionGradKvState<C>& st, T* gk, T* gv) {
  const AttentionRow r = attention_row(block, thread, s.n);
  if (!r.valid) return;
  const int64_t off = s.in.at(r.head, r.row);
  for (int64_t d = 0; d < s.dh; ++d) {
    store(gk[off + d], st.dk[d]);
    store(gv[off + d], st.dv[d]);
  }
}

}  // namespace vmoe::cuda
