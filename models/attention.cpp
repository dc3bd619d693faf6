// Multi-head self-attention forward (backward comes from the ops' autograd): the fused
// attention op, or the composed ops when attention dropout is active in training.
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
  // [B, T, 3D] -> [3, B, H, T, hd]
  Tensor qkv = qkv_(x).reshape({b, t, 3, heads_, hd}).permute({2, 0, 3, 1, 4}).contiguous();
  Tensor q = qkv.slice(0, 0, 1).reshape({b * heads_, t, hd});
  Tensor k = qkv.slice(0, 1, 2).reshape({b * heads_, t, hd});
  Tensor v = qkv.slice(0, 2, 3).reshape({b * heads_, t, hd});
  const double scale = 1.0 / std::sqrt(double(hd));
  Tensor heads;  // [B*H, T, hd]
  if (ctx.training() && dropout_rate_ > 0) {
    // Dropout on the attention weights needs them materialised: the composed ops, as the
    // fused kernels keep no [T, T] weights.
    Tensor scores = matmul(q * scale, k, Trans::no, Trans::yes);  // [B*H, T, T]
    Tensor attn = example_dropout(softmax(scores).reshape({b, heads_, t, t}), dropout_rate_, ctx,
                                  "attn_dropout", stream)
                      .reshape({b * heads_, t, t});
    heads = matmul(attn, v);
  } else {
    heads = attention(q, k, v, scale);  // fused where the backend has the kernels
  }
  Tensor merged = heads.reshape({b, heads_, t, hd}).permute({0, 2, 1, 3}).reshape({b, t, dim_});
  return out_(merged);
}

}  // namespace vmoe
