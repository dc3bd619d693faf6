// The op set: free functions that check their arguments (shape, dtype, device), dispatch to
// the backend of the inputs' device and record autograd nodes. Every differentiable op here
// has a finite-difference gradient test in f64 (test/core/test_gradcheck.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "core/slot_layout.h"
#include "core/tensor.h"

namespace vmoe {

// ---- creation ----
Tensor arange(int64_t n, DType dtype = DType::i64, Device device = default_device());
// N(0, 1) / U[lo, hi) values that are a pure function of (key, offset + flat index).
Tensor randn(const Shape& shape, RngKey key, uint64_t offset = 0, DType dtype = DType::f32,
             Device device = default_device());
Tensor rand_uniform(const Shape& shape, RngKey key, double lo, double hi, uint64_t offset = 0,
                    DType dtype = DType::f32, Device device = default_device());

// ---- views and copies (differentiable) ----
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed; a view when possible
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);  // [start, end)
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast size-1 axes (a view)
Tensor contiguous(const Tensor& x);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor to_dtype(const Tensor& x, DType dtype);  // differentiable between float types
// Copies src into dst (same shape; dst may be a view). Not recorded.
void copy_(Tensor& dst, const Tensor& src);
void fill_(Tensor& dst, double value);

// ---- elementwise (broadcasting, differentiable) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// 1 where a == b, else 0 (floats, broadcasting). Not differentiable.
Tensor equal(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor square(const Tensor& x);
// GELU, tanh approximation (as the reference implementation).
Tensor gelu(const Tensor& x);
// Standard normal CDF.
Tensor normal_cdf(const Tensor& x);
// gelu(x + bias) in one pass (core/ops_bias_gelu.cpp): x [..., F] with bias [F], or
// x [G, ..., F] with bias [G, F] (one row per leading index: the stacked experts).
Tensor bias_gelu(const Tensor& x, const Tensor& bias);
// The MoE combine (core/ops_combine.cpp): y [R, D] expert outputs, weights [N, k], rows i64
// [N * k] (the row of each choice, -1 dropped) -> [N, D] in y's dtype, out[n] = sum_j
// weights[n, j] * y[rows[n * k + j]] summed in the weights' dtype.
Tensor combine(const Tensor& y, const Tensor& weights, const Tensor& rows);
// The experts' two-layer MLP on the dispatch buffer (core/ops_expert_mlp.cpp): x [E, R, D],
// occupied [E * R] i64 (assign_slots' dispatch_rows: >= 0 where the row holds a token), w1
// [E, D, M], b1 [E, M], w2 [E, M, D], b2 [E, D] -> [E, R, D]: row r of expert e is
// gelu(x_r w1[e] + b1[e]) w2[e] + b2[e] where occupied, 0 on padding rows (which take no part in
// any gradient). The value stacked_linear(bias_gelu(matmul(x, w1), b1), w2, b2) has there.
Tensor expert_mlp(const Tensor& x, const Tensor& occupied, const Tensor& w1, const Tensor& b1,
                  const Tensor& w2, const Tensor& b2);
// Whether expert_mlp runs fused (padding rows skipped) for `dtype` on `device`; else it composes
// the ops on every row and masks the result, which costs more than the composed ops alone.
bool expert_mlp_is_fused(Device device, DType dtype);
// The MoE auxiliary losses over routing groups in one op each (core/ops_aux_losses.cpp), for
// backends that have them (aux_losses_are_fused); models/moe_losses.h composes the same value,
// gradients and bits from ops. Groups are consecutive runs of group_size rows, the last one
// shorter when group_size does not divide N; cv2(v) = mean((v - mean(v))^2) / mean(v)^2.
// p [N, E] -> [] the sum over the groups of cv2(each group's column sums of p).
Tensor fused_importance_loss(const Tensor& p, int64_t group_size);
// logits, noisy_logits [N, E], kth i64 [N] (each row's k-th choice), sigma > 0 -> [] the sum
// over the groups of cv2(each group's column means of Phi((logits - noisy[n, kth[n]]) / sigma)).
Tensor fused_load_loss(const Tensor& logits, const Tensor& noisy_logits, const Tensor& kth,
                       double sigma, int64_t group_size);
bool aux_losses_are_fused(Device device, DType dtype);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}
inline Tensor operator+(const Tensor& a, double s) {
  return add_scalar(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
  return add_scalar(a, -s);
}
inline Tensor operator*(const Tensor& a, double s) {
  return mul_scalar(a, s);
}
inline Tensor operator*(double s, const Tensor& a) {
  return mul_scalar(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
  return mul_scalar(a, 1.0 / s);
}

// ---- reductions (differentiable) ----
enum class KeepDim : bool { no = false, yes = true };
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, KeepDim keep = KeepDim::no);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, KeepDim keep = KeepDim::no);
Tensor max(const Tensor& x, int64_t axis, KeepDim keep = KeepDim::no);
Tensor sum_all(const Tensor& x);
Tensor mean_all(const Tensor& x);
// Sums a broadcast gradient back down to `shape`.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- matrix products (OpenBLAS on CPU; differentiable) ----
enum class Trans : bool { no = false, yes = true };
// a [..., M, K] x b [K, N] -> [..., M, N]; or batched a [B, M, K] x b [B, K, N] -> [B, M, N].
// Trans::yes uses the transpose of the last two axes of that operand.
Tensor matmul(const Tensor& a, const Tensor& b, Trans ta = Trans::no, Trans tb = Trans::no);
// a^T b of batched a [B, K, M] and b [B, K, N] -> [B, M, N] (matmul(a, b, Trans::yes)), where
// the caller promises a or b to be zero on every row p of K with rows[i * K + p] < 0 (the
// experts' padding rows): a backend may skip those terms (the CPU's do, with the same bits).
// Not recorded: for gradients.
Tensor matmul_over_rows(const Tensor& a, const Tensor& b, const Tensor& rows);
// x [..., K] @ w [K, N] + bias [N] — the dense layer, fused.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias);
// x [G, R, K] @ w [G, K, N] + bias [G, N] (undefined: none) -> [G, R, N]: G dense layers at
// once (stacked experts), each bias added as its product is stored where the backend can.
Tensor stacked_linear(const Tensor& x, const Tensor& w, const Tensor& bias);

// ---- neural-network ops (fused; differentiable) ----
Tensor softmax(const Tensor& x);      // over the last axis
Tensor log_softmax(const Tensor& x);  // over the last axis
// (x - mean) / sqrt(var + eps) * scale + bias over the last axis; scale, bias [D].
Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps);
// logits [B, C], labels i32 [B] -> scalar mean over the batch of -log softmax(logits)[label].
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);
// Sum over classes of binary cross-entropy with one-hot targets, mean over the batch.
Tensor sigmoid_cross_entropy(const Tensor& logits, const Tensor& labels);
// Inverted dropout; the mask is a pure function of (key, offset + flat index).
Tensor dropout(const Tensor& x, double rate, RngKey key, uint64_t offset = 0);
// images [B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], each patch flattened in (py, px, c) order.
Tensor image_to_patches(const Tensor& images, int64_t patch);
// Scaled dot-product attention (core/ops_attention.cpp): q, k, v [..., N, Dh] ->
// softmax(q k^T * scale) v [..., N, Dh], one softmax per leading index. `fused_if_available`
// uses the backend's fused kernels where it has them for the dtype, else (and for `composed`)
// the ops scale, matmul, softmax, matmul.
enum class AttentionPath : bool { fused_if_available = false, composed = true };
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                 AttentionPath path = AttentionPath::fused_if_available);
// Multi-head self-attention on a fused projection: qkv [B, N, 3 * H * Dh], read as
// [B, N, 3, H, Dh] (q, k, v of each head) -> the heads' outputs merged, [B, N, H * Dh]. The
// fused kernels read q, k, v in place and write the merged heads; otherwise q, k, v are
// permuted copies and attention() runs on them.
Tensor self_attention(const Tensor& qkv, int64_t heads, double scale,
                      AttentionPath path = AttentionPath::fused_if_available);

// ---- indexing ----
// Rows of x [N, ...] at idx i32/i64 [M] -> [M, ...]; idx -1 gives a zero row. Differentiable.
Tensor index_select(const Tensor& x, const Tensor& idx);
// out [rows, ...] = sum of src rows [M, ...] into out[idx[m]]; idx -1 is skipped. Differentiable.
Tensor index_add(int64_t rows, const Tensor& idx, const Tensor& src);
// out[..., j] = x[..., idx[..., j]] along the last axis. Differentiable in x.
Tensor gather(const Tensor& x, const Tensor& idx);
// Along the last axis: the k largest values (descending; ties by lower index) and their i64
// indices. values are differentiable.
struct TopK {
  Tensor values;
  Tensor indices;
};
TopK topk(const Tensor& x, int64_t k);
// Stable argsort along the last axis (i64). Not differentiable.
enum class Order : bool { ascending = false, descending = true };
Tensor argsort(const Tensor& x, Order order = Order::ascending);
// Inclusive cumulative sum along `axis`. Differentiable for floats.
Tensor cumsum(const Tensor& x, int64_t axis);
// Index of the largest value along the last axis (i64). Not differentiable.
Tensor argmax(const Tensor& x);
// One-hot i32/i64 [...] -> dtype [..., classes].
Tensor one_hot(const Tensor& idx, int64_t classes, DType dtype = DType::f32);

// ---- routing: V-MoE slot assignment on the device (core/slot_layout.h; not recorded) ----
// For each group of `layout`, the group-local positions of its tokens by descending priority
// [N] (stable: ties keep token order): Batch Prioritized Routing's order.
Tensor priority_order(const Tensor& priority, const SlotLayout& layout);
struct SlotAssignment {
  Tensor combine_rows;   // [N * k] i64 buffer row of each (token, choice), -1 = dropped
  Tensor dispatch_rows;  // [E * R] i64 token of each buffer row, -1 = padding
  Tensor expert_load;    // [E] i64 kept assignments per expert
};
// experts [N, k] i64 chosen experts, best first; order: priority_order(...) or undefined for
// token order. k-major: every token's 1st choice takes a slot before any token's 2nd.
SlotAssignment assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& layout);
// Routing's dispatch (core/ops_combine.cpp): x [N, D] -> [E * R, D], row r = x[dispatch_rows[r]]
// (-1: zeros), as index_select. Backward gathers each token's rows through combine_rows, the
// inverse map assign_slots pairs with dispatch_rows (row combine_rows[n k + j] holds token n),
// instead of scattering into x's gradient.
Tensor dispatch(const Tensor& x, const Tensor& dispatch_rows, const Tensor& combine_rows);

// ---- in-place helpers for optimizers and gradients (not recorded) ----
void add_(Tensor& dst, const Tensor& src, double alpha = 1.0);  // dst += alpha * src
void scale_(Tensor& dst, double s);
// Sum of squares of every element: a one-element f64 tensor [] on x's device (double
// accumulation).
Tensor sum_squares(const Tensor& x);

// Axis normalisation shared by ops: negative axes count from the end.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* op);
// Broadcast result shape of a and b, or an error naming both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace vmoe
