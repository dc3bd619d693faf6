// The bodies of the CUDA backend's random-number, patch, indexing and routing kernels, as
// __host__ __device__ functions of a thread's position in the grid (GridPos, kernel_bodies.h).
// core/cuda/index_kernels.cu runs them in __global__ kernels; test/core/test_cuda_index_bodies.cpp
// runs the same bodies over the same grids on the host and compares them with the CPU backend.
// The CPU backend (core/cpu/index.cpp, routing.cpp, nn.cpp) is the reference: the same values,
// the same positions reported as kernel errors (the element then counts as absent), and sums
// added in the same order so that results are bit for bit the same on every run.
//
// Element types: E is a raw word of an element's size (bytes moved as they are: index_select,
// patches, gather), T a stored floating type computed in compute_t<T> (element_access.h), I an
// index type (int32_t, int64_t), K and P the key and position types of the scatter-add sort.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"  // GridPos, for_grid_stride
#include "core/cuda/kernel_error_slot.h"
#include "core/cuda/philox.h"

namespace vmoe::cuda {

// An index out of range, into the kernel error slot (kernel_error_slot.h). nvcc's host pass
// never runs a body, and the slot's device function exists only in its device pass.
VMOE_HD inline void report_index_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t value,
                                       int64_t position, int64_t lo, int64_t hi) {
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)
  report_kernel_error(slot, op, value, position, lo, hi);
#else
  (void)slot, (void)op, (void)value, (void)position, (void)lo, (void)hi;
#endif
}

// ---- random numbers (counter-based: element i draws counter offset + i) ----

// mask[i] = keep_scale where uniform01(offset + i) >= rate, else 0 (inverted dropout).
template <class T>
VMOE_HD inline void dropout_mask_body(const GridPos& p, T* mask, int64_t n, double rate,
                                      compute_t<T> keep_scale, uint64_t seed, uint64_t stream,
                                      uint64_t offset) {
  for_grid_stride(p, n, [&](int64_t i) {
    const bool keep = uniform01(seed, stream, offset + uint64_t(i)) >= rate;
    store(mask[i], keep ? keep_scale : compute_t<T>(0));
  });
}

// out[i] = normal01(offset + i), or lo + (hi - lo) * uniform01(offset + i); drawn in double and
// rounded once to compute_t<T> (then to bf16 on store), as the CPU backend.
template <class T>
VMOE_HD inline void random_fill_body(const GridPos& p, T* out, int64_t n, uint64_t seed,
                                     uint64_t stream, uint64_t offset, bool normal, double lo,
                                     double hi) {
  for_grid_stride(p, n, [&](int64_t i) {
    const uint64_t at = offset + uint64_t(i);
    const double v =
        normal ? normal01(seed, stream, at) : lo + (hi - lo) * uniform01(seed, stream, at);
    store(out[i], compute_t<T>(v));
  });
}

// ---- image patches: images [B, H, W, C] <-> patches [B, (H/p)*(W/p), p*p*C] ----

// One thread per patch element f = (((b * GH + gy) * GW + gx) * p + py) * (p * C) + j; it
// copies that element from the image (to_images false) or into it (true).
template <class E>
VMOE_HD inline void patches_body(const GridPos& p, E* images, E* patches, int64_t b, int64_t h,
                                 int64_t w, int64_t c, int64_t ps, bool to_images) {
  const int64_t gh = h / ps, gw = w / ps, row = ps * c;
  for_grid_stride(p, b * gh * gw * ps * row, [&](int64_t f) {
    int64_t rest = f;
    const int64_t j = rest % row;
    rest /= row;
    const int64_t py = rest % ps;
    rest /= ps;
    const int64_t gx = rest % gw;
    rest /= gw;
    const int64_t gy = rest % gh;
    const int64_t image = rest / gh;
    const int64_t at = ((image * h + gy * ps + py) * w + gx * ps) * c + j;
    if (to_images)
      images[at] = patches[f];
    else
      patches[f] = images[at];
  });
}

// ---- index checks ----

// Reports the values of values[0, n) outside [lo, hi) as kernel errors of `op` (position i):
// the check of index_select and index_add when there is no element to move (rows of zero
// width, or no destination rows), so no element thread to do it.
template <class I>
VMOE_HD inline void check_range_body(const GridPos& p, const I* values, int64_t n, int64_t lo,
                                     int64_t hi, KernelErrorOp op, KernelErrorSlot* slot) {
  for_grid_stride(p, n, [&](int64_t i) {
    const int64_t v = int64_t(values[i]);
    if (v < lo || v >= hi) report_index_error(slot, op, v, i, lo, hi);
  });
}

// ---- row select: out [m, row] = x [rows, row] at idx [m]; -1 gives a zero row ----

// One thread per output element; the thread of a row's first column reports the row's index
// when it lies outside [-1, rows) (a kernel error; the row is zero). Rows of zero width are
// checked by check_range_body instead.
template <class E, class I>
VMOE_HD inline void index_select_body(const GridPos& p, const E* x, const I* idx, E* out, int64_t m,
                                      int64_t row, int64_t rows, KernelErrorSlot* slot) {
  for_grid_stride(p, m * row, [&](int64_t f) {
    const int64_t i = f / row, col = f - i * row;
    const int64_t at = int64_t(idx[i]);
    const bool inside = at >= 0 && at < rows;
    if (col == 0 && !inside && at != -1)
      report_index_error(slot, KernelErrorOp::index_select, at, i, -1, rows);
    out[f] = inside ? x[at * row + col] : E(0);
  });
}

// ---- deterministic scatter-add (index_add, gather_backward) ----
//
// Every source element has a destination key; a stable sort of (key, source position) lists
// each destination's sources in source order (core/cuda/sort_kernels.cu, CUB), segment_starts
// finds where each destination's run begins, and segment_add sums each run in that order: the
// CPU backend's order of additions, with no atomics, so the same bits on every run.
// Sources without a valid destination get the key `dests` (after every real one) and are never
// summed.

// index_add: key[i] = idx[i], or `rows` for -1 and out-of-range indices (kernel errors
// outside [-1, rows), as the CPU backend); pos[i] = i.
template <class I, class K, class P>
VMOE_HD inline void index_add_keys_body(const GridPos& p, const I* idx, int64_t m, int64_t rows,
                                        K* keys, P* pos, KernelErrorSlot* slot) {
  for_grid_stride(p, m, [&](int64_t i) {
    const int64_t at = int64_t(idx[i]);
    const bool inside = at >= 0 && at < rows;
    if (!inside && at != -1) report_index_error(slot, KernelErrorOp::index_add, at, i, -1, rows);
    keys[i] = K(inside ? at : rows);
    pos[i] = P(i);
  });
}

// gather_backward: idx [rows, k] into gx [rows, n]: key[f] = r * n + idx[f] (row r = f / k),
// or rows * n when idx[f] is outside [0, n) (skipped without an error, as the CPU backend:
// gather reported it in the forward pass); pos[f] = f.
template <class I, class K, class P>
VMOE_HD inline void gather_backward_keys_body(const GridPos& p, const I* idx, int64_t rows,
                                              int64_t k, int64_t n, K* keys, P* pos) {
  for_grid_stride(p, rows * k, [&](int64_t f) {
    const int64_t at = int64_t(idx[f]);
    const bool inside = at >= 0 && at < n;
    keys[f] = K(inside ? (f / k) * n + at : rows * n);
    pos[f] = P(f);
  });
}

// starts[d] = the first position of sorted_keys [m] (ascending) whose key is >= d, for
// d in [0, dests]: destination d's sources are sorted positions [starts[d], starts[d + 1]).
template <class K, class P>
VMOE_HD inline void segment_starts_body(const GridPos& p, const K* sorted_keys, int64_t m,
                                        int64_t dests, P* starts) {
  for_grid_stride(p, dests + 1, [&](int64_t d) {
    int64_t lo = 0, hi = m;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (int64_t(sorted_keys[mid]) < d)
        lo = mid + 1;
      else
        hi = mid;
    }
    starts[d] = P(lo);
  });
}

// out [dests, row]: out[d, c] (or 0 when !accumulate) plus src[sorted_pos[q], c] for q in
// destination d's run, added in run order, in compute_t<T>, rounded once on store.
template <class T, class P>
VMOE_HD inline void segment_add_body(const GridPos& p, const T* src, const P* sorted_pos,
                                     const P* starts, T* out, int64_t dests, int64_t row,
                                     bool accumulate) {
  for_grid_stride(p, dests * row, [&](int64_t f) {
    const int64_t d = f / row, col = f - d * row;
    compute_t<T> sum = accumulate ? load(out[f]) : compute_t<T>(0);
    for (int64_t q = int64_t(starts[d]); q < int64_t(starts[d + 1]); ++q)
      sum += load(src[int64_t(sorted_pos[q]) * row + col]);
    store(out[f], sum);
  });
}

// ---- gather along the last axis: out [R, k] = x [R, n] at idx [R, k] ----

// Indices outside [0, n) are kernel errors (position f) and give 0.
template <class E, class I>
VMOE_HD inline void gather_body(const GridPos& p, const E* x, const I* idx, E* out, int64_t rows,
                                int64_t n, int64_t k, KernelErrorSlot* slot) {
  for_grid_stride(p, rows * k, [&](int64_t f) {
    const int64_t at = int64_t(idx[f]);
    const bool inside = at >= 0 && at < n;
    if (!inside) report_index_error(slot, KernelErrorOp::gather, at, f, 0, n);
    out[f] = inside ? x[(f / k) * n + at] : E(0);
  });
}

// gather_backward for short index rows (k up to kGatherBackwardDirectK): one thread per element
// of gx [R, n] sums the gy [R, k] entries whose index is its column, in j order (the CPU's).
inline constexpr int64_t kGatherBackwardDirectK = 16;

template <class T, class I>
VMOE_HD inline void gather_backward_direct_body(const GridPos& p, const T* gy, const I* idx, T* gx,
                                                int64_t rows, int64_t n, int64_t k) {
  for_grid_stride(p, rows * n, [&](int64_t f) {
    const int64_t r = f / n, col = f - r * n;
    compute_t<T> sum = 0;
    for (int64_t j = 0; j < k; ++j)
      if (int64_t(idx[r * k + j]) == col) sum += load(gy[r * k + j]);
    store(gx[f], sum);
  });
}

// ---- top-k of each row (one thread per row) ----

// values, indices [R, k] = the k largest of x [R, n], largest first, equal values by lower index
// (the CPU's order): k rounds of selection, round j taking the best element that comes after
// round j-1's in that order. Rows with NaN have no defined order (as on the CPU).
template <class T>
VMOE_HD inline void topk_body(const GridPos& p, const T* x, T* values, int64_t* indices,
                              int64_t rows, int64_t n, int64_t k) {
  for_grid_stride(p, rows, [&](int64_t r) {
    const T* row = x + r * n;
    compute_t<T> prev_value = 0;
    int64_t prev = -1;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      compute_t<T> best_value = 0;
      for (int64_t i = 0; i < n; ++i) {
        const compute_t<T> v = load(row[i]);
        const bool after_prev = prev < 0 || v < prev_value || (v == prev_value && i > prev);
        if (after_prev && (best < 0 || v > best_value)) {
          best = i;
          best_value = v;
        }
      }
      if (best < 0) best = j < n ? j : 0;  // only NaN left: any index, never out of range
      indices[r * k + j] = best;
      values[r * k + j] = row[best];
      prev = best;
      prev_value = load(row[best]);
    }
  });
}

// ---- argsort helpers (the sort itself is CUB's, sort_kernels.cu) ----

// columns [R * n] = each element's column (the values the segmented sort permutes); offsets
// [R + 1] = r * n (the segments).
VMOE_HD inline void argsort_columns_body(const GridPos& p, int64_t* columns, int64_t* offsets,
                                         int64_t rows, int64_t n) {
  for_grid_stride(p, rows * n, [&](int64_t f) { columns[f] = f % n; });
  for_grid_stride(p, rows + 1, [&](int64_t r) { offsets[r] = r * n; });
}

// The unsigned word of an argsort key type, the same size: CUB sorts these, so that one
// ascending sort per word size serves every key type and both orders.
template <class K>
using sort_word_t = std::conditional_t<sizeof(K) == 4, uint32_t, uint64_t>;

// v's sort word: unsigned order of the words = ascending order of the values (descending: the
// complement, so the stable ascending sort keeps ties in column order as a stable descending
// sort does). Floats: the sign bit set for positives and every bit flipped for negatives, -0.0
// taken as +0.0 (they compare equal). Signed integers: the sign bit flipped.
template <class K>
VMOE_HD inline sort_word_t<K> sort_word(K v, bool descending) {
  using U = sort_word_t<K>;
  static_assert(sizeof(K) == sizeof(U), "argsort keys are 4 or 8 bytes");
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  U w;
  if constexpr (std::is_floating_point_v<K>) {
    if (v == K(0)) v = K(0);
    memcpy(&w, &v, sizeof w);
    w = (w & sign) ? U(~w) : U(w | sign);
  } else {
    w = U(v) ^ sign;
  }
  return descending ? U(~w) : w;
}

// words [n] = the sort words of x [n].
template <class K>
VMOE_HD inline void argsort_words_body(const GridPos& p, const K* x, sort_word_t<K>* words,
                                       int64_t n, bool descending) {
  for_grid_stride(p, n, [&](int64_t i) { words[i] = sort_word(x[i], descending); });
}

// bf16 keys as f32 (exact) for CUB's float sort: the same order, ties included.
VMOE_HD inline void widen_bf16_body(const GridPos& p, const BFloat16* x, float* y, int64_t n) {
  for_grid_stride(p, n, [&](int64_t i) { y[i] = load(x[i]); });
}

// ---- one-hot: out [n, classes] ----

// 1 where the column is idx[i], else 0; an index outside [0, classes) is a kernel error
// (position i) and gives a zero row.
template <class T, class I>
VMOE_HD inline void one_hot_body(const GridPos& p, const I* idx, T* out, int64_t n, int64_t classes,
                                 KernelErrorSlot* slot) {
  for_grid_stride(p, n * classes, [&](int64_t f) {
    const int64_t i = f / classes, col = f - i * classes;
    const int64_t at = int64_t(idx[i]);
    if (col == 0 && (at < 0 || at >= classes))
      report_index_error(slot, KernelErrorOp::one_hot, at, i, 0, classes);
    store(out[f], at == col ? compute_t<T>(1) : compute_t<T>(0));
  });
}

// ---- slot assignment (V-MoE routing; core/cpu/routing.cpp is the reference) ----
//
// Per group g (tokens [start, start + s)), the CPU walks the k-major sequence q = r * s + j
// (choice r of the token at the group's j-th position in `order`) and gives each assignment the
// next slot of its expert while fewer than the group's capacity are taken. An assignment's slot
// is therefore its rank among the group's earlier assignments to the same expert, and it is
// kept when that rank is below the capacity. The kernels compute the ranks in parallel:
//   1. assign_slots_prepare: the expert of every sequence element (-1 when skipped), range
//      checks, combine and dispatch filled with -1;
//   2. assign_slots_tile_count: per tile of kSlotTile sequence elements, how many go to each
//      expert;
//   3. assign_slots_tile_scan: per (group, expert), the tiles' counts turned into exclusive
//      prefix sums (the rank of each tile's first assignment) and the group's kept total;
//   4. assign_slots_place: each assignment's rank = its tile's base + the same-expert elements
//      before it in its tile; kept ones write dispatch and combine;
//   5. assign_slots_load: expert_load = the kept totals summed over groups.

inline constexpr int64_t kSlotTile = 128;

// The launch geometry of a slot assignment, from the layout alone.
struct SlotGrid {
  int64_t tokens = 0, k = 0, experts = 0, group_size = 0, capacity = 0, last_capacity = 0,
          rows_per_expert = 0;
  int64_t groups = 0;           // ceil(tokens / group_size)
  int64_t tiles_per_group = 0;  // ceil(k * group_size / kSlotTile)

  VMOE_HD int64_t group_start(int64_t g) const { return g * group_size; }
  VMOE_HD int64_t group_tokens(int64_t g) const {
    const int64_t left = tokens - g * group_size;
    return left < group_size ? left : group_size;
  }
  VMOE_HD int64_t group_capacity(int64_t g) const {
    return g + 1 == groups ? last_capacity : capacity;
  }
  // Sequence elements of every group are stored from g * k * group_size on (the last group's
  // sequence is shorter), k * tokens in all.
  VMOE_HD int64_t sequence_length() const { return k * tokens; }
};

// The group-local token a sequence element of group g takes (-1 when its order entry is out of
// range): order[start + j] with BPR, j without.
VMOE_HD inline int64_t slot_local_token(const int64_t* order, int64_t start, int64_t s, int64_t j) {
  const int64_t local = order ? order[start + j] : j;
  return local >= 0 && local < s ? local : -1;
}

// 1. One thread per f in [0, max(k * tokens, tokens, experts * rows_per_expert)):
//    experts[f] outside [0, E) is a kernel error (position f); order[f] outside [0, s) one of
//    position j (group-local, as the CPU); sequence[f] = the expert of sequence element f, or
//    -1; combine[f] = -1; dispatch[f] = -1.
VMOE_HD inline void assign_slots_prepare_body(const GridPos& p, const SlotGrid& L,
                                              const int64_t* experts, const int64_t* order,
                                              int32_t* sequence, int64_t* combine,
                                              int64_t* dispatch, KernelErrorSlot* slot) {
  const int64_t nk = L.sequence_length(), dispatch_rows = L.experts * L.rows_per_expert;
  int64_t total = nk > dispatch_rows ? nk : dispatch_rows;
  total = total > L.tokens ? total : L.tokens;
  for_grid_stride(p, total, [&](int64_t f) {
    if (f < nk) {
      const int64_t x = experts[f];
      if (x < 0 || x >= L.experts)
        report_index_error(slot, KernelErrorOp::assign_slots, x, f, 0, L.experts);
      combine[f] = -1;
      // Sequence element f: group g, position q = r * s + j of that group's sequence.
      const int64_t g = f / (L.k * L.group_size), q = f - g * L.k * L.group_size;
      const int64_t start = L.group_start(g), s = L.group_tokens(g);
      const int64_t r = q / s, j = q - r * s;
      const int64_t local = slot_local_token(order, start, s, j);
      int32_t expert = -1;
      if (local >= 0) {
        const int64_t e = experts[(start + local) * L.k + r];
        if (e >= 0 && e < L.experts) expert = int32_t(e);
      }
      sequence[f] = expert;
    }
    if (order && f < L.tokens) {
      const int64_t g = f / L.group_size, j = f - g * L.group_size, s = L.group_tokens(g);
      if (order[f] < 0 || order[f] >= s)
        report_index_error(slot, KernelErrorOp::assign_slots_order, order[f], j, 0, s);
    }
    if (f < dispatch_rows) dispatch[f] = -1;
  });
}

// 2. One thread per tile u = g * tiles_per_group + t: counts[u * E + x] = the elements of the
//    tile's sequence span that go to expert x.
VMOE_HD inline void assign_slots_tile_count_body(const GridPos& p, const SlotGrid& L,
                                                 const int32_t* sequence, int32_t* counts) {
  for_grid_stride(p, L.groups * L.tiles_per_group, [&](int64_t u) {
    const int64_t g = u / L.tiles_per_group, t = u - g * L.tiles_per_group;
    int32_t* c = counts + u * L.experts;
    for (int64_t x = 0; x < L.experts; ++x)
      c[x] = 0;
    const int64_t length = L.k * L.group_tokens(g), base = g * L.k * L.group_size;
    const int64_t q1 = (t + 1) * kSlotTile < length ? (t + 1) * kSlotTile : length;
    for (int64_t q = t * kSlotTile; q < q1; ++q) {
      const int32_t x = sequence[base + q];
      if (x >= 0) ++c[x];
    }
  });
}

// 3. One thread per (g, x): counts[(g, t, x)] becomes the count of tiles before t (exclusive
//    prefix), kept[g * E + x] = min(total, the group's capacity).
VMOE_HD inline void assign_slots_tile_scan_body(const GridPos& p, const SlotGrid& L,
                                                int32_t* counts, int64_t* kept) {
  for_grid_stride(p, L.groups * L.experts, [&](int64_t v) {
    const int64_t g = v / L.experts, x = v - g * L.experts;
    int64_t running = 0;
    for (int64_t t = 0; t < L.tiles_per_group; ++t) {
      int32_t& c = counts[(g * L.tiles_per_group + t) * L.experts + x];
      const int32_t here = c;
      c = int32_t(running);
      running += here;
    }
    const int64_t cap = L.group_capacity(g);
    kept[v] = running < cap ? running : cap;
  });
}

// 4. One thread per sequence element f: its rank among its group's assignments to the same
//    expert; below the capacity it takes row x * R + g * capacity + rank.
VMOE_HD inline void assign_slots_place_body(const GridPos& p, const SlotGrid& L,
                                            const int64_t* order, const int32_t* sequence,
                                            const int32_t* counts, int64_t* combine,
                                            int64_t* dispatch) {
  for_grid_stride(p, L.sequence_length(), [&](int64_t f) {
    const int32_t x = sequence[f];
    if (x < 0) return;
    const int64_t g = f / (L.k * L.group_size), q = f - g * L.k * L.group_size;
    const int64_t t = q / kSlotTile, tile_first = f - (q - t * kSlotTile);
    int64_t rank = counts[(g * L.tiles_per_group + t) * L.experts + x];
    for (int64_t e = tile_first; e < f; ++e)
      rank += sequence[e] == x ? 1 : 0;
    if (rank >= L.group_capacity(g)) return;  // the expert is full in this group: dropped
    const int64_t start = L.group_start(g), s = L.group_tokens(g);
    const int64_t r = q / s, j = q - r * s;
    const int64_t token = start + slot_local_token(order, start, s, j);
    const int64_t row = x * L.rows_per_expert + g * L.capacity + rank;
    dispatch[row] = token;
    combine[token * L.k + r] = row;
  });
}

// 5. One thread per expert: load[x] = sum over groups of kept[g * E + x].
VMOE_HD inline void assign_slots_load_body(const GridPos& p, const SlotGrid& L, const int64_t* kept,
                                           int64_t* load) {
  for_grid_stride(p, L.experts, [&](int64_t x) {
    int64_t total = 0;
    for (int64_t g = 0; g < L.groups; ++g)
      total += kept[g * L.experts + x];
    load[x] = total;
  });
}

}  // namespace vmoe::cuda
