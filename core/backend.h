// A backend is a table of memory functions and kernels for one device type, filled by name
// (designated initialisers). Ops (core/ops_*.cpp) check arguments, allocate outputs and call
// these; kernels may assume checked, contiguous inputs unless a comment says "strided".
// Entries marked optional may be nullptr; `supports` says which dtypes an entry handles, so
// that a test reports what a backend lacks as skipped, never as passed. The CPU backend
// (core/cpu/) is the reference for every other one.
#pragma once
#include <cstdint>
#include <optional>

#include "core/allocator.h"
#include "core/op_kinds.h"
#include "core/optim/update_options.h"
#include "core/rng.h"
#include "core/slot_layout.h"
#include "core/tensor.h"

namespace vmoe {

enum class Distribution : bool { uniform = false, normal = true };
enum class PatchDirection : bool { to_patches = false, to_images = true };
enum class ScanDirection : bool { forward = false, reverse = true };
enum class SortOrder : bool { ascending = false, descending = true };

// C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch; row-major; strides in elements.
// a, b, c are device pointers (Tensor::device_data()).
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1, beta = 0;
  // [n] of `dtype`, added to every row of C after the product (beta 0), a linear layer's bias;
  // only for a backend whose gemm_adds_bias is set (the others get it filled into C, beta 1).
  // Batch entry i adds the row at bias + i * stride_bias (0: one row for all; stacked experts
  // have one each).
  const void* bias = nullptr;
  int64_t stride_bias = 0;
  DType dtype = DType::f32;  // of A and B
  // Of C when it differs from A and B: bf16 inputs accumulate in f32 and may write f32 (the
  // mixed-precision gradients of f32 master weights). Unset: C is `dtype` too.
  std::optional<DType> c_dtype;
  // [batch * k] i64 on the device, or null: where k_used[i * k + p] < 0, row p of product i's
  // op(B) or column p of its op(A) is zero (the experts' padding rows in their weight
  // gradients), and a backend may skip those terms.
  const int64_t* k_used = nullptr;
};

// One fused optimizer update over flat [n] buffers of one dtype (f32 or f64). When
// grad_norm_sq ([] f64, the squared global gradient norm) is given and max_norm > 0, the
// gradients are first scaled by max_norm / norm where norm > max_norm (global-norm clipping).
struct UpdateArgs {
  Tensor values, grads;   // [n]
  Tensor decay_mask;      // [n] u8: 1 where weight decay applies
  Tensor slot_a, slot_b;  // AdamW: m, v; SGD: trace (slot_b undefined)
  Tensor grad_norm_sq;    // [] f64, or undefined: no clipping
  double max_norm = 0;
  double lr = 0;
  int64_t step = 1;  // 1-based update number (Adam's bias correction)
};

// The entries a backend may lack, for Backend::supports.
enum class Entry : uint8_t {
  copy,
  fill,
  binary,
  unary,
  unary_backward,
  add_scaled,
  scale,
  sum_squares,
  reduce_sum,
  max_last,
  gemm,
  softmax,
  softmax_backward,
  layer_norm,
  layer_norm_backward,
  softmax_xent,
  sigmoid_xent,
  dropout_mask,
  random_fill,
  patches,
  index_select,
  index_add,
  gather,
  gather_backward,
  topk,
  argsort,
  cumsum,
  one_hot,
  assign_slots,
  adamw_update,
  sgd_update,
  attention_forward,
  attention_backward,
  bias_gelu,
  bias_gelu_backward,
  combine,
  combine_backward,
  expert_mlp,
  expert_mlp_backward,
  importance_loss,
  importance_loss_backward,
  load_loss,
  load_loss_backward
};

struct Backend {
  const char* name = nullptr;

  // ---- memory ----
  Allocator* allocator = nullptr;  // every Storage of this device type comes from here
  // Contiguous byte copies; host pointers are ordinary memory.
  void (*copy_to_host)(const void* device_src, void* host_dst, size_t bytes) = nullptr;
  void (*copy_from_host)(const void* host_src, void* device_dst, size_t bytes) = nullptr;
  // Waits until the device has finished all work queued so far.
  void (*synchronize)() = nullptr;

  // ---- elementwise ----
  // strided -> strided copy with dtype conversion; shapes equal.
  void (*copy)(const Tensor& src, const Tensor& dst) = nullptr;
  void (*fill)(const Tensor& dst, double value) = nullptr;  // strided
  // a, b: strided views already broadcast to out's shape.
  void (*binary)(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = nullptr;
  void (*unary)(UnaryOp op, const Tensor& x, const Tensor& out) = nullptr;
  // gx = gy * d op(x)/dx, given y = op(x).
  void (*unary_backward)(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                         const Tensor& gx) = nullptr;
  void (*add_scaled)(const Tensor& dst, const Tensor& src, double alpha) = nullptr;  // dst += a*src
  void (*scale)(const Tensor& dst, double s) = nullptr;

  // ---- reductions ----
  // out [1] f64 += sum of x's squares (accumulated in double).
  void (*sum_squares)(const Tensor& x, const Tensor& out) = nullptr;
  // out keeps x's rank with size 1 on reduced axes.
  void (*reduce_sum)(const Tensor& x, const Tensor& out) = nullptr;
  // Max over the last axis of x [R, N] -> values [R], arg i64 [R].
  void (*max_last)(const Tensor& x, const Tensor& values, const Tensor& arg) = nullptr;
  // x viewed as [outer, n, inner]; reverse runs from the end (the backward of cumsum).
  void (*cumsum)(const Tensor& x, int64_t outer, int64_t n, int64_t inner, ScanDirection dir,
                 const Tensor& out) = nullptr;

  // ---- matrix products ----
  void (*gemm)(const GemmArgs& args) = nullptr;
  // Whether gemm adds GemmArgs::bias itself: the CPU adds it as it stores C, sparing the pass
  // that fills C with the bias first and the product's read of it.
  bool gemm_adds_bias = false;

  // ---- neural-network ops ----
  // Over the last axis.
  void (*softmax)(const Tensor& x, const Tensor& y, SoftmaxKind kind) = nullptr;
  void (*softmax_backward)(const Tensor& y, const Tensor& gy, const Tensor& gx,
                           SoftmaxKind kind) = nullptr;
  // x [R, D]; mean, rstd [R] (same dtype as x).
  void (*layer_norm)(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                     const Tensor& y, const Tensor& mean, const Tensor& rstd) = nullptr;
  void (*layer_norm_backward)(const Tensor& x, const Tensor& scale, const Tensor& mean,
                              const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                              const Tensor& gscale, const Tensor& gbias) = nullptr;
  // logits [B, C], labels i32 [B] -> per-example loss [B]; dlogits = d(mean loss)/dlogits.
  // A label outside [0, C) is a kernel error (core/kernel_errors.h); its row gets loss 0.
  void (*softmax_xent)(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                       const Tensor& dlogits) = nullptr;
  void (*sigmoid_xent)(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                       const Tensor& dlogits) = nullptr;
  void (*dropout_mask)(const Tensor& mask, double rate, RngKey key, uint64_t offset) = nullptr;
  void (*random_fill)(const Tensor& out, RngKey key, uint64_t offset, Distribution dist, double lo,
                      double hi) = nullptr;
  // to_patches: images [B, H, W, C] -> patches [B, N, p*p*C]; to_images writes images.
  void (*patches)(const Tensor& images, int64_t p, const Tensor& patches,
                  PatchDirection dir) = nullptr;

  // ---- indexing (indices out of range are kernel errors; the element counts as absent) ----
  void (*index_select)(const Tensor& x, const Tensor& idx, const Tensor& out) = nullptr;
  void (*index_add)(const Tensor& src, const Tensor& idx, const Tensor& out) = nullptr;  // out +=
  void (*gather)(const Tensor& x, const Tensor& idx, const Tensor& out) = nullptr;
  void (*gather_backward)(const Tensor& gy, const Tensor& idx, const Tensor& gx) = nullptr;
  void (*topk)(const Tensor& x, int64_t k, const Tensor& values, const Tensor& indices) = nullptr;
  void (*argsort)(const Tensor& x, SortOrder order, const Tensor& out) = nullptr;  // stable
  void (*one_hot)(const Tensor& idx, const Tensor& out) = nullptr;

  // ---- routing (optional) ----
  // experts [N, k] i64 (best first); order [N] i64: for each group, the group-local positions
  // of its tokens in the order they take slots (a permutation of [0, S_g); Batch Prioritized
  // Routing), or undefined for token order. -> combine_rows [N * k] i64 (buffer row of each
  // assignment, -1 dropped), dispatch_rows [E * R] i64 (token of each row, -1 padding),
  // expert_load [E] i64 (kept assignments per expert). k-major: every token's 1st choice
  // before any token's 2nd.
  void (*assign_slots)(const Tensor& experts, const Tensor& order, const SlotLayout& layout,
                       const Tensor& combine_rows, const Tensor& dispatch_rows,
                       const Tensor& expert_load) = nullptr;

  // ---- optimizer updates (optional; fused; gradients are not modified) ----
  void (*adamw_update)(const UpdateArgs& args, const AdamWOptions& options) = nullptr;
  void (*sgd_update)(const UpdateArgs& args, const SgdOptions& options) = nullptr;

  // ---- fused attention (optional; core/ops_attention.cpp composes the ops without it) ----
  // q, k, v, out [B, H, N, Dh] views with a contiguous last axis (k, v, and in backward gq, gk,
  // gv, have q's strides; gout has out's), so that q, k, v can be read in place from a fused
  // [B, N, 3, H, Dh] projection and out written as [B, N, H, Dh]: out = softmax(q k^T * scale) v
  // per (b, h); lse [B*H, N] contiguous (f64 for f64 inputs, else f32) gets each row's
  // log-sum-exp of the scaled scores, so that backward recomputes the probabilities instead of
  // keeping [B*H, N, N].
  void (*attention_forward)(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                            const Tensor& out, const Tensor& lse) = nullptr;
  // Given the forward's out and lse and gout, writes gq, gk, gv (every element of the views).
  void (*attention_backward)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                             const Tensor& lse, const Tensor& gout, double scale, const Tensor& gq,
                             const Tensor& gk, const Tensor& gv) = nullptr;

  // ---- fused bias + GELU (optional; ops::bias_gelu composes add and gelu without it) ----
  // x, y [G, R, F], bias [G, F]: y = gelu(x + bias[g]) with the sum in the compute type (f32
  // for bf16 storage, not rounded before the GELU).
  void (*bias_gelu)(const Tensor& x, const Tensor& bias, const Tensor& y) = nullptr;
  // gx [G, R, F] = gy * gelu'(x + bias[g]); the op sums the bias gradient.
  void (*bias_gelu_backward)(const Tensor& x, const Tensor& bias, const Tensor& gy,
                             const Tensor& gx) = nullptr;

  // ---- fused MoE combine (optional; ops::combine composes gather, product and sum without) ----
  // y [R, D], weights [N, k] (y's dtype), rows [N * k] i64 (-1: dropped) -> out [N, D]:
  // out[n] = sum_j weights[n, j] * y[rows[n * k + j]], the choices added in order j = 0, 1, ...
  void (*combine)(const Tensor& y, const Tensor& weights, const Tensor& rows,
                  const Tensor& out) = nullptr;
  // Given gout [N, D]: gy [R, D] (rows no choice uses get 0; a row several use, their sum) and
  // gweights [N, k] (0 for dropped choices).
  void (*combine_backward)(const Tensor& y, const Tensor& weights, const Tensor& rows,
                           const Tensor& gout, const Tensor& gy, const Tensor& gweights) = nullptr;

  // ---- the experts' MLP on the dispatch buffer's occupied rows (optional; ops::expert_mlp
  // composes matmul, bias_gelu and stacked_linear, and masks, without it) ----
  // x [E, R, D], occupied [E * R] i64 (>= 0: the row holds a token; assign_slots' dispatch
  // rows), w1 [E, D, M], b1 [E, M], w2 [E, M, D], b2 [E, D] -> on occupied rows pre [E, R, M] =
  // x w1, h = gelu(pre + b1) (bias_gelu's arithmetic), out [E, R, D] = h w2 + b2; every other
  // row of pre, h and out is 0.
  void (*expert_mlp)(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                     const Tensor& w2, const Tensor& b2, const Tensor& pre, const Tensor& h,
                     const Tensor& out) = nullptr;
  // Given gy [E, R, D] and the forward's pre: on occupied rows gpre [E, R, M] = (gy w2^T) *
  // gelu'(pre + b1) and gx [E, R, D] = gpre w1^T, 0 on the others; gb1 [E, M] and gb2 [E, D],
  // the sums of gpre and gy over the occupied rows. The op takes the weight gradients from gemm.
  void (*expert_mlp_backward)(const Tensor& gy, const Tensor& occupied, const Tensor& w1,
                              const Tensor& b1, const Tensor& w2, const Tensor& pre,
                              const Tensor& gpre, const Tensor& gx, const Tensor& gb1,
                              const Tensor& gb2) = nullptr;

  // ---- the MoE auxiliary losses over routing groups (optional; models/moe_losses.cpp composes
  // ops without them, and these entries give the composed ops' bits) ----
  // Groups: consecutive runs of group_size rows of [N, E], the last one shorter when group_size
  // does not divide N; G of them. cv2(v) = mean((v - mean(v))^2) / mean(v)^2 of a row v [E].
  // p [N, E] -> sums [G, E], each group's column sums of p; loss [] = the sum over the groups of
  // cv2(sums[g]) (the full groups' summed first, then the last partial one added).
  void (*importance_loss)(const Tensor& p, int64_t group_size, const Tensor& loss,
                          const Tensor& sums) = nullptr;
  // Given g [], the loss' gradient: gp [N, E].
  void (*importance_loss_backward)(const Tensor& sums, int64_t group_size, const Tensor& g,
                                   const Tensor& gp) = nullptr;
  // logits, noisy [N, E], kth [N] i64 (each row's k-th choice) -> means [G, E], each group's
  // column means of Phi((logits[n, e] - noisy[n, kth[n]]) / sigma); loss [] as above from them.
  void (*load_loss)(const Tensor& logits, const Tensor& noisy, const Tensor& kth, double sigma,
                    int64_t group_size, const Tensor& loss, const Tensor& means) = nullptr;
  // Given g []: glogits and gnoisy [N, E] (gnoisy is 0 off each row's k-th choice).
  void (*load_loss_backward)(const Tensor& logits, const Tensor& noisy, const Tensor& kth,
                             double sigma, int64_t group_size, const Tensor& means, const Tensor& g,
                             const Tensor& glogits, const Tensor& gnoisy) = nullptr;

  // Whether `entry` handles `dtype` (nullptr: every dtype the op layer allows).
  bool (*supports_dtype)(Entry entry, DType dtype) = nullptr;
};

const Backend& backend_for(Device device);
const Backend& cpu_backend();
const Backend& cpu_strict_backend();

// Whether `backend` has `entry` and it handles `dtype`.
bool backend_supports(const Backend& backend, Entry entry, DType dtype);
// Entries a backend may leave nullptr (the ops that use them check with require_entry); every
// other entry is checked to be present when the table is first used.
bool is_optional(Entry entry);
const char* entry_name(Entry entry);
// Throws std::invalid_argument naming the backend, entry and dtype unless supported.
void require_entry(const Backend& backend, Entry entry, DType dtype);

}  // namespace vmoe
