// Multi-head self-attention forward (backward comes from the ops' autograd): the fused
// self-attention op on the qkv projection, or the composed ops when attention dropout is active
// in training.
#include "models/attention.h"

#include <cmath>
#include <stdexcept>

#include "models/example_dropout.h"

namespace vmoe {

MultiHeadAttention::MultiHeadAttention(ParameterStore& store, const std::string& prefix,
                                       int64_t dim, int64_t heads, double dropout_rate)
    : dim_(dim),
      heads_(heads),
      dropout_rate_(dropout_rate),
      // Xavier over each of q, k, v as separate [D, D] projections, as upstream.
      qkv_(store, prefix + "/qkv", dim, 3 * dim, InitSpec::xavier_uniform(double(dim), double(dim)),
           InitSpec::zeros()),
      out_(store, prefix + "/out", dim, dim, InitSpec::xavier_uniform(double(dim), double(dim)),
           InitSpec::zeros()) {
  if (heads <= 0 || dim % heads != 0)
    throw std::invalid_argument("hidden_size " + std::to_string(dim) +
                                " must be divisible by num_heads " + std::to_string(heads));
}

Tensor MultiHeadAttention::operator()(const Tensor& x, const ForwardContext& ctx,
                                      uint64_t stream) const {
  const int64_t b = x.size(0), t = x.size(1), hd = dim_ / heads_;
  const double scale = 1.0 / std::sqrt(double(hd));
  Tensor qkv = qkv_(x);  // [B, T, 3D], read as [B, T, 3, H, hd]
  if (!(ctx.training() && dropout_rate_ > 0))
    return out_(self_attention(qkv, heads_, scale));  // fused where the backend has the kernels
  // Dropout on the attention weights needs them materialised: the composed ops, as the fused
  // kernels keep no [T, T] weights. [B, T, 3D] -> [3, B, H, T, hd]
  Tensor parts = qkv.reshape({b, t, 3, heads_, hd}).permute({2, 0, 3, 1, 4}).contiguous();
  Tensor q = parts.slice(0, 0, 1).reshape({b * heads_, t, hd});
  Tensor k = parts.slice(0, 1, 2).reshape({b * heads_, t, hd});
  Tensor v = parts.slice(0, 2, 3).reshape({b * heads_, t, hd});
  Tensor scores = matmul(q * scale, k, Trans::no, Trans::yes);  // [B*H, T, T]
  Tensor attn = example_dropout(softmax(scores).reshape({b, heads_, t, t}), dropout_rate_, ctx,
                                "attn_dropout", stream)
                    .reshape({b * heads_, t, t});
  Tensor heads = matmul(attn, v);  // [B*H, T, hd]
  Tensor merged = heads.reshape({b, heads_, t, hd}).permute({0, 2, 1, 3}).reshape({b, t, dim_});
  return out_(merged);
}

LayerCost MultiHeadAttention::cost(const CostShape& s, int64_t tokens) const {
  const int64_t b = s.batch, t = tokens, rows = b * t;
  const DType a = s.activation;
  LayerCost c = qkv_.cost(rows, a, s.param);     // [B, T, 3D]
  const int64_t product = 2 * b * t * t * dim_;  // q k^T (and p v) over all heads
  if (!(s.training && dropout_rate_ > 0) && s.fused_attention) {
    // self_attention's fused path: q, k, v read in place, the merged heads written directly.
    c.gemm(2 * product);     // counted as the composed products (core/ops_attention.cpp)
    c.keep(rows * dim_, a);  // out (the merged heads)
    c.keep(b * heads_ * t, a == DType::f64 ? DType::f64 : DType::f32);  // log-sum-exp
    c += out_.cost(rows, a, s.param);
    return c;
  }
  c.keep(3 * rows * dim_, a);         // the contiguous [3, B, H, T, hd] copy
  c.keep(rows * dim_, a);             // q * scale
  c.small_tensors += 1;               // the scale
  c.gemm(product);                    // scores
  c.keep(2 * b * heads_ * t * t, a);  // scores, softmax
  if (s.training && dropout_rate_ > 0) c.keep(2 * b * heads_ * t * t, a);  // mask, product
  c.gemm(product);
  c.keep(rows * dim_, a);  // heads
  c.keep(rows * dim_, a);  // merged heads (a contiguous copy)
  c += out_.cost(rows, a, s.param);
  return c;
}

}  // namespace vmoe
