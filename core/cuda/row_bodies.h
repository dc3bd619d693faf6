// The bodies of the CUDA backend's row kernels: one block per row of the last axis (softmax and
// its backward, layer norm and its backward's input gradient, the cross-entropies, max over the
// last axis). Each body is the code of one thread of the block, written against the `Block`
// interface of kernel_bodies.h; its threads stride over the row's columns and meet in
// block_reduce (a fixed tree: the same bits on every run). Rows beyond the grid are taken by a
// block-stride loop, which every thread of a block runs the same number of times.
// Stored type T, math in compute_t<T> (f32 for bf16). Host and device code alike.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/cuda/element_access.h"
#include "core/cuda/kernel_bodies.h"
#include "core/cuda/kernel_error_slot.h"
#include "core/op_kinds.h"

namespace vmoe::cuda {

// A label out of range, into the kernel error slot. nvcc's host pass never runs a body, and the
// slot's device function exists only in its device pass.
VMOE_HD inline void report_label_error(KernelErrorSlot* slot, KernelErrorOp op, int64_t label,
                                       int64_t row, int64_t classes) {
#if defined(__CUDA_ARCH__) || !defined(__CUDACC__)
  report_kernel_error(slot, op, label, row, 0, classes);
#else
  (void)slot, (void)op, (void)label, (void)row, (void)classes;
#endif
}

// Softmax (or log-softmax) of rows of n values: the row max m, the sum s of exp(x - m), then
// y = exp(x - m) / s, or (x - m) - log s (not x - (m + log s): that sum rounds to m's ulp).
template <class Block, class T>
VMOE_HD inline void softmax_rows_body(const Block& blk, const T* x, T* y, int64_t rows, int64_t n,
                                      SoftmaxKind kind) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < rows; r += blk.blocks()) {
    const T* row = x + r * n;
    T* out = y + r * n;
    C m = C(-INFINITY);
    for (int64_t j = t0; j < n; j += nt)
      m = load(row[j]) > m ? load(row[j]) : m;
    m = block_reduce(blk, m, MaxOp{});
    C s = 0;
    for (int64_t j = t0; j < n; j += nt)
      s += std::exp(load(row[j]) - m);
    s = block_reduce(blk, s, SumOp{});
    if (kind == SoftmaxKind::log) {
      const C log_s = std::log(s);
      for (int64_t j = t0; j < n; j += nt)
        store(out[j], (load(row[j]) - m) - log_s);
    } else {
      const C inv = C(1) / s;
      for (int64_t j = t0; j < n; j += nt)
        store(out[j], std::exp(load(row[j]) - m) * inv);
    }
  }
}

// gx of softmax rows given y: plain: y * (gy - sum(gy * y)); log: gy - exp(y) * sum(gy).
template <class Block, class T>
VMOE_HD inline void softmax_backward_rows_body(const Block& blk, const T* y, const T* gy, T* gx,
                                               int64_t rows, int64_t n, SoftmaxKind kind) {
  using C = compute_t<T>;
  const bool log = kind == SoftmaxKind::log;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < rows; r += blk.blocks()) {
    const T* yr = y + r * n;
    const T* gr = gy + r * n;
    T* out = gx + r * n;
    C s = 0;
    for (int64_t j = t0; j < n; j += nt)
      s += log ? load(gr[j]) : load(gr[j]) * load(yr[j]);
    s = block_reduce(blk, s, SumOp{});
    for (int64_t j = t0; j < n; j += nt) {
      if (log)
        store(out[j], load(gr[j]) - std::exp(load(yr[j])) * s);
      else
        store(out[j], load(yr[j]) * (load(gr[j]) - s));
    }
  }
}

// Layer norm of rows of d values: the mean (sum / d), the variance around it (two passes, as
// the CPU backend: E[x^2] - E[x]^2 would cancel), y = (x - mean) * rstd * scale + bias with
// rstd = 1 / sqrt(var + eps); mean and rstd [rows] are kept for the backward. scale, bias,
// mean and rstd are in the compute type (f32 for bf16 x: the f32 master weights of mixed
// precision and f32 row statistics, as core/ops_nn.cpp's layer_norm hands them).
template <class Block, class T>
VMOE_HD inline void layer_norm_rows_body(const Block& blk, const T* x, const compute_t<T>* scale,
                                         const compute_t<T>* bias, double eps, T* y,
                                         compute_t<T>* mean, compute_t<T>* rstd, int64_t rows,
                                         int64_t d) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < rows; r += blk.blocks()) {
    const T* row = x + r * d;
    T* out = y + r * d;
    C s = 0;
    for (int64_t j = t0; j < d; j += nt)
      s += load(row[j]);
    const C mu = block_reduce(blk, s, SumOp{}) / C(d);
    C v = 0;
    for (int64_t j = t0; j < d; j += nt)
      v += (load(row[j]) - mu) * (load(row[j]) - mu);
    const C var = block_reduce(blk, v, SumOp{}) / C(d);
    const C rs = C(1) / std::sqrt(var + C(eps));
    for (int64_t j = t0; j < d; j += nt)
      store(out[j], (load(row[j]) - mu) * rs * load(scale[j]) + load(bias[j]));
    if (t0 == 0) {
      store(mean[r], mu);
      store(rstd[r], rs);
    }
  }
}

// Two sums reduced at once (one tree instead of two).
template <class C>
struct SumPair {
  C a, b;
};
struct SumPairOp {
  template <class C>
  VMOE_HD SumPair<C> operator()(SumPair<C> x, SumPair<C> y) const {
    return SumPair<C>{x.a + y.a, x.b + y.b};
  }
};

// The input gradient of layer norm rows: with xhat = (x - mean) * rstd and g = gy * scale,
// gx = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat)). The parameter gradients are column
// sums over the rows: layer_norm_param_grad_* in reduce_bodies.h.
template <class Block, class T>
VMOE_HD inline void layer_norm_backward_rows_body(const Block& blk, const T* x,
                                                  const compute_t<T>* scale,
                                                  const compute_t<T>* mean,
                                                  const compute_t<T>* rstd, const T* gy, T* gx,
                                                  int64_t rows, int64_t d) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < rows; r += blk.blocks()) {
    const T* in = x + r * d;
    const T* g = gy + r * d;
    T* out = gx + r * d;
    const C mu = load(mean[r]), rs = load(rstd[r]);
    SumPair<C> s{0, 0};
    for (int64_t j = t0; j < d; j += nt) {
      const C xhat = (load(in[j]) - mu) * rs;
      const C gj = load(g[j]) * load(scale[j]);
      s.a += gj;
      s.b += gj * xhat;
    }
    s = block_reduce(blk, s, SumPairOp{});
    const C mean_g = s.a / C(d), mean_gx = s.b / C(d);
    for (int64_t j = t0; j < d; j += nt) {
      const C xhat = (load(in[j]) - mu) * rs;
      store(out[j], rs * (load(g[j]) * load(scale[j]) - mean_g - xhat * mean_gx));
    }
  }
}

// Softmax cross-entropy of logits [B, C] with labels i32 [B]: loss [B] = log sum exp(x) -
// x[label], dlogits = (softmax(x) - onehot(label)) / B (the gradient of the mean loss). A label
// outside [0, C) goes to the error slot ("softmax_cross_entropy: label <v> at position <row> is
// outside [0, C)") and its row gets loss 0 and gradient 0.
template <class Block, class T>
VMOE_HD inline void softmax_xent_rows_body(const Block& blk, const T* logits, const int32_t* labels,
                                           T* loss, T* dlogits, int64_t b, int64_t c,
                                           KernelErrorSlot* slot) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < b; r += blk.blocks()) {
    const T* row = logits + r * c;
    T* drow = dlogits + r * c;
    const int64_t label = labels[r];
    if (label < 0 || label >= c) {  // the same branch for the whole block
      if (t0 == 0) {
        report_label_error(slot, KernelErrorOp::softmax_xent, label, r, c);
        store(loss[r], C(0));
      }
      for (int64_t j = t0; j < c; j += nt)
        store(drow[j], C(0));
      continue;
    }
    C m = C(-INFINITY);
    for (int64_t j = t0; j < c; j += nt)
      m = load(row[j]) > m ? load(row[j]) : m;
    m = block_reduce(blk, m, MaxOp{});
    C s = 0;
    for (int64_t j = t0; j < c; j += nt)
      s += std::exp(load(row[j]) - m);
    s = block_reduce(blk, s, SumOp{});
    if (t0 == 0) store(loss[r], (m - load(row[label])) + std::log(s));
    const C inv = C(1) / (s * C(b)), inv_b = C(1) / C(b);
    for (int64_t j = t0; j < c; j += nt) {
      C v = std::exp(load(row[j]) - m) * inv;
      if (j == label) v -= inv_b;
      store(drow[j], v);
    }
  }
}

// Sigmoid cross-entropy of logits [B, C] against one-hot labels i32 [B]: loss [B] = the sum over
// classes of max(x, 0) - x y + log1p(exp(-|x|)) (the stable form), dlogits = (sigmoid(x) - y) / B.
// A label outside [0, C) goes to the error slot; its row is computed with no positive class.
template <class Block, class T>
VMOE_HD inline void sigmoid_xent_rows_body(const Block& blk, const T* logits, const int32_t* labels,
                                           T* loss, T* dlogits, int64_t b, int64_t c,
                                           KernelErrorSlot* slot) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < b; r += blk.blocks()) {
    const T* row = logits + r * c;
    T* drow = dlogits + r * c;
    const int64_t label = labels[r];
    if ((label < 0 || label >= c) && t0 == 0)
      report_label_error(slot, KernelErrorOp::sigmoid_xent, label, r, c);
    C total = 0;
    for (int64_t j = t0; j < c; j += nt) {
      const C xv = load(row[j]);
      const C yv = j == label ? C(1) : C(0);
      total += (xv > C(0) ? xv : C(0)) - xv * yv + std::log1p(std::exp(-std::abs(xv)));
      store(drow[j], (C(1) / (C(1) + std::exp(-xv)) - yv) / C(b));
    }
    total = block_reduce(blk, total, SumOp{});
    if (t0 == 0) store(loss[r], total);
  }
}

// The best (value, column) of a part of a row; column -1: none yet.
template <class C>
struct ArgMax {
  C value;
  int64_t column;
};
// The larger value wins, the smaller column on a tie: the first maximum, as the CPU's scan.
struct ArgMaxOp {
  template <class C>
  VMOE_HD ArgMax<C> operator()(ArgMax<C> a, ArgMax<C> b) const {
    if (a.column < 0) return b;
    if (b.column < 0) return a;
    if (b.value > a.value || (b.value == a.value && b.column < a.column)) return b;
    return a;
  }
};

// Max over the last axis of x [R, N] -> values [R], arg i64 [R]: the first column holding the
// maximum, as the CPU backend's scan `if (x[j] > x[best]) best = j` from best = 0 (which skips
// NaNs after column 0 and keeps column 0 when it is NaN, or when every value is).
template <class Block, class T>
VMOE_HD inline void max_last_rows_body(const Block& blk, const T* x, T* values, int64_t* arg,
                                       int64_t rows, int64_t n) {
  using C = compute_t<T>;
  const int64_t t0 = blk.thread(), nt = blk.threads();
  for (int64_t r = blk.block(); r < rows; r += blk.blocks()) {
    const T* row = x + r * n;
    ArgMax<C> best{C(0), -1};
    for (int64_t j = t0; j < n; j += nt) {
      const C v = load(row[j]);
      if (v == v && (best.column < 0 || v > best.value)) best = ArgMax<C>{v, j};
    }
    best = block_reduce(blk, best, ArgMaxOp{});
    if (t0 == 0) {
      const C first = load(row[0]);
      const int64_t column = (first != first || best.column < 0) ? 0 : best.column;
      values[r] = row[column];
      arg[r] = column;
    }
  }
}

}  // namespace vmoe::cuda
