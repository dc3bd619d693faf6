// The bodies of the CUDA backend's reductions and scans: sum of squares, sums over axes, cumulative
// sums, and the column sums of layer norm's parameter gradients. Every sum has a fixed order
// that depends only on the shapes (never float atomics), so a run gives the same bits each time:
//   - block sums (Block interface of kernel_bodies.h): per-thread partials in a fixed stride
//     order, then the block's tree;
//   - column sums: the rows are cut into chunks (column_chunks, a function of the shape); one
//     thread sums its chunk of one column in row order, a second pass adds the chunks in order.
// Host and device code alike.
#pragma once
#include <cstdint>
#include <vector>

#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"
#include "core/cuda/row_bodies.h"  // SumPair
#include "core/cuda/strided_index.h"

namespace vmoe::cuda {

// ---- sum of squares: out [1] f64 += sum x^2 (in double) ----

// Blocks of the first pass over n elements: one per kRowThreads elements, at most 1024.
VMOE_HD inline int64_t sum_squares_blocks(int64_t n) {
  const int64_t b = (n + kRowThreads - 1) / kRowThreads;
  return b < 1 ? 1 : (b > 1024 ? 1024 : b);
}

// Pass 1: block b's sum over its grid-stride elements -> partials[b].
template <class Block, class T>
VMOE_HD inline void sum_squares_partial_body(const Block& blk, const T* x, int64_t n,
                                             double* partials) {
  double acc = 0;
  for (int64_t i = blk.block() * blk.threads() + blk.thread(); i < n;
       i += blk.blocks() * blk.threads()) {
    const double v = double(load(x[i]));
    acc += v * v;
  }
  acc = block_reduce(blk, acc, SumOp{});
  if (blk.thread() == 0) partials[blk.block()] = acc;
}

// Pass 2 (one block): the sum of the `count` partials, added to out[0].
template <class Block>
VMOE_HD inline void sum_squares_final_body(const Block& blk, const double* partials, int64_t count,
                                           double* out) {
  double acc = 0;
  for (int64_t i = blk.thread(); i < count; i += blk.threads())
    acc += partials[i];
  acc = block_reduce(blk, acc, SumOp{});
  if (blk.thread() == 0) out[0] += acc;
}

// ---- column chunks ----

// Threads a column reduction aims for: enough to fill an H200 (132 SMs x 2048 threads) once.
inline constexpr int64_t kColumnTargetThreads = 132 * 2048;
// The fewest rows a chunk sums (shorter chunks cost more in the second pass than they save).
inline constexpr int64_t kMinChunkRows = 32;

// How many chunks the rows of a column sum over `rows` rows of `columns` columns are cut into.
VMOE_HD inline int64_t column_chunks(int64_t columns, int64_t rows) {
  const int64_t c = columns < 1 ? 1 : columns;
  int64_t chunks = (kColumnTargetThreads + c - 1) / c;
  const int64_t most = (rows + kMinChunkRows - 1) / kMinChunkRows;
  if (chunks > most) chunks = most;
  return chunks < 1 ? 1 : chunks;
}
// Rows per chunk.
VMOE_HD inline int64_t chunk_rows(int64_t rows, int64_t chunks) {
  return (rows + chunks - 1) / chunks;
}

// ---- sum over axes: x contiguous; out keeps x's rank, size 1 on reduced axes ----

// The kept axes (their linear index is out's) and the reduced axes, each merged with x's strides
// (make_strided_index); n_out and n_red elements.
struct ReduceSumPlan {
  StridedIndex<1> kept, reduced;
  int64_t n_out = 0, n_red = 0;
};

// Whether the reduced elements of one output are x's innermost run (stride 1): then one block
// sums each output (reduce_sum_rows_body), else the chunked column sums do.
VMOE_HD inline bool reduce_sum_by_rows(const ReduceSumPlan& plan) {
  return plan.reduced.rank > 0 && plan.reduced.strides[0][plan.reduced.rank - 1] == 1 &&
         plan.n_red > 1;
}

// Host side: the plan for x of shape xs (contiguous) summed to out of shape os (xs's rank, 1 on
// the reduced axes).
inline ReduceSumPlan make_reduce_sum_plan(const std::vector<int64_t>& xs,
                                          const std::vector<int64_t>& os) {
  std::vector<int64_t> strides(xs.size(), 1);
  for (size_t d = xs.size(); d-- > 1;)
    strides[d - 1] = strides[d] * xs[d];
  std::vector<int64_t> kept_sizes, kept_strides, red_sizes, red_strides;
  ReduceSumPlan plan;
  plan.n_out = plan.n_red = 1;
  for (size_t d = 0; d < xs.size(); ++d) {
    const bool reduced = os[d] == 1 && xs[d] != 1;
    (reduced ? red_sizes : kept_sizes).push_back(xs[d]);
    (reduced ? red_strides : kept_strides).push_back(strides[d]);
    (reduced ? plan.n_red : plan.n_out) *= xs[d];
  }
  const std::vector<int64_t>* kept[1] = {&kept_strides};
  const std::vector<int64_t>* red[1] = {&red_strides};
  plan.kept = make_strided_index<1>(kept_sizes, kept);
  plan.reduced = make_strided_index<1>(red_sizes, red);
  return plan;
}

// Doubles of device scratch the plan's sums need (0: none).
VMOE_HD inline int64_t reduce_sum_scratch(const ReduceSumPlan& plan) {
  if (reduce_sum_by_rows(plan)) return 0;
  const int64_t chunks = column_chunks(plan.n_out, plan.n_red);
  return chunks > 1 ? chunks * plan.n_out : 0;
}

// One block per output: the sum of its reduced elements, in double.
template <class Block, class T>
VMOE_HD inline void reduce_sum_rows_body(const Block& blk, const T* x, T* out,
                                         const ReduceSumPlan& plan) {
  for (int64_t o = blk.block(); o < plan.n_out; o += blk.blocks()) {
    int64_t kept[1];
    strided_offsets(plan.kept, o, kept);
    double acc = 0;
    for (int64_t j = blk.thread(); j < plan.n_red; j += blk.threads()) {
      int64_t red[1];
      strided_offsets(plan.reduced, j, red);
      acc += double(load(x[kept[0] + red[0]]));
    }
    acc = block_reduce(blk, acc, SumOp{});
    if (blk.thread() == 0) out[o] = from_double<T>(acc);
  }
}

// Pass 1, thread (chunk k, output o) at linear k * n_out + o: the sum over the chunk's reduced
// elements in order, in double -> partials[k * n_out + o], or straight to out[o] when there is
// one chunk.
template <class T>
VMOE_HD inline void reduce_sum_columns_body(const GridPos& p, const T* x, T* out, double* partials,
                                            const ReduceSumPlan& plan, int64_t chunks) {
  const int64_t per = chunk_rows(plan.n_red, chunks);
  for_grid_stride(p, chunks * plan.n_out, [&](int64_t i) {
    const int64_t k = i / plan.n_out, o = i % plan.n_out;
    int64_t kept[1];
    strided_offsets(plan.kept, o, kept);
    const int64_t j1 = (k + 1) * per < plan.n_red ? (k + 1) * per : plan.n_red;
    double acc = 0;
    for (int64_t j = k * per; j < j1; ++j) {
      int64_t red[1];
      strided_offsets(plan.reduced, j, red);
      acc += double(load(x[kept[0] + red[0]]));
    }
    if (chunks == 1)
      out[o] = from_double<T>(acc);
    else
      partials[i] = acc;
  });
}

// Pass 2, thread per output: the chunks' partials added in chunk order.
template <class T>
VMOE_HD inline void reduce_sum_finish_body(const GridPos& p, const double* partials, T* out,
                                           int64_t n_out, int64_t chunks) {
  for_grid_stride(p, n_out, [&](int64_t o) {
    double acc = 0;
    for (int64_t k = 0; k < chunks; ++k)
      acc += partials[k * n_out + o];
    out[o] = from_double<T>(acc);
  });
}

// ---- cumulative sums: x, out viewed as [outer, n, inner]; reverse runs from the end ----

// Whether the block scan (one block per line, cumsum_block_body) runs instead of one thread per
// line (cumsum_lines_body): for few long lines, such as arange's single line.
VMOE_HD inline bool cumsum_by_blocks(int64_t lines, int64_t n) {
  return n >= 1024 && lines < 4096;
}

// One thread per line (o, i): the running sum in order, in compute_t<T> (as the CPU backend).
template <class T>
VMOE_HD inline void cumsum_lines_body(const GridPos& p, const T* x, T* out, int64_t outer,
                                      int64_t n, int64_t inner, bool reverse) {
  for_grid_stride(p, outer * inner, [&](int64_t line) {
    const int64_t o = line / inner, i = line % inner;
    compute_t<T> acc = 0;
    for (int64_t s = 0; s < n; ++s) {
      const int64_t j = reverse ? n - 1 - s : s;
      const int64_t at = (o * n + j) * inner + i;
      acc += load(x[at]);
      store(out[at], acc);
    }
  });
}

// One block per line: each thread takes a contiguous chunk of the line (in scan order), sums
// it, takes the sum of the chunks before its own (read in order from the scratch), then scans
// its chunk from there. Integers give the CPU's values exactly; floats are added in another
// (fixed) order.
template <class Block, class T>
VMOE_HD inline void cumsum_block_body(const Block& blk, const T* x, T* out, int64_t outer,
                                      int64_t n, int64_t inner, bool reverse) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  const int64_t per = (n + nt - 1) / nt;
  const int64_t s0 = t0 * per < n ? t0 * per : n, s1 = s0 + per < n ? s0 + per : n;
  C* sums = blk.template scratch<C>();
  for (int64_t line = blk.block(); line < outer * inner; line += blk.blocks()) {
    const int64_t o = line / inner, i = line % inner;
    auto at = [&](int64_t s) { return (o * n + (reverse ? n - 1 - s : s)) * inner + i; };
    C local = 0;
    for (int64_t s = s0; s < s1; ++s)
      local += load(x[at(s)]);
    sums[t0] = local;
    blk.sync();
    C acc = 0;
    for (int64_t t = 0; t < t0; ++t)
      acc += sums[t];
    blk.sync();  // the scratch is reused by the next line
    for (int64_t s = s0; s < s1; ++s) {
      acc += load(x[at(s)]);
      store(out[at(s)], acc);
    }
  }
}

// ---- layer norm's parameter gradients: gscale[j] = sum_r gy xhat, gbias[j] = sum_r gy ----

// Pass 1, thread (chunk k, column j) at k * d + j: the chunk's rows in order, in compute_t<T>
// -> partials[k * d + j] (gscale's) and partials[(chunks + k) * d + j] (gbias's).
template <class T>
VMOE_HD inline void layer_norm_param_grad_partial_body(const GridPos& p, const T* x,
                                                       const compute_t<T>* mean,
                                                       const compute_t<T>* rstd, const T* gy,
                                                       compute_t<T>* partials, int64_t rows,
                                                       int64_t d, int64_t chunks) {
  using C = compute_t<T>;
  const int64_t per = chunk_rows(rows, chunks);
  for_grid_stride(p, chunks * d, [&](int64_t i) {
    const int64_t k = i / d, j = i % d;
    const int64_t r1 = (k + 1) * per < rows ? (k + 1) * per : rows;
    C gs = 0, gb = 0;
    for (int64_t r = k * per; r < r1; ++r) {
      const C g = load(gy[r * d + j]);
      gs += g * ((load(x[r * d + j]) - load(mean[r])) * load(rstd[r]));
      gb += g;
    }
    partials[i] = gs;
    partials[chunks * d + i] = gb;
  });
}

// Pass 2, thread per column: the chunks added in order.
template <class T>
VMOE_HD inline void layer_norm_param_grad_finish_body(const GridPos& p,
                                                      const compute_t<T>* partials,
                                                      compute_t<T>* gscale, compute_t<T>* gbias,
                                                      int64_t d, int64_t chunks) {
  using C = compute_t<T>;
  for_grid_stride(p, d, [&](int64_t j) {
    C gs = 0, gb = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      gs += partials[k * d + j];
      gb += partials[(chunks + k) * d + j];
    }
    store(gscale[j], gs);
    store(gbias[j], gb);
  });
}

// Chunks of layer norm's parameter gradient sums over `rows` rows of d columns.
VMOE_HD inline int64_t layer_norm_param_chunks(int64_t d, int64_t rows) {
  return column_chunks(d, rows);
}

}  // namespace vmoe::cuda
