// Multi-head self-attention with a fused qkv projection: kernel [D, 3D] whose columns are
// [q | k | v], head h using columns h*hd .. (h+1)*hd of each.
#pragma once
#include <string>

#include "models/dense.h"
#include "models/forward_context.h"
#include "models/layer_cost.h"

namespace vmoe {

class MultiHeadAttention {
 public:
  MultiHeadAttention(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t heads,
                     double dropout_rate);
  // x [B, T, D] -> [B, T, D]; `stream` keys attention dropout.
  Tensor operator()(const Tensor& x, const ForwardContext& ctx, uint64_t stream) const;
  // What operator() costs on [s.batch, tokens, D] (attention.cpp, beside the forward).
  LayerCost cost(const CostShape& s, int64_t tokens) const;

 private:
  int64_t dim_, heads_;
  double dropout_rate_;
  Dense qkv_, out_;
};

}  // namespace vmoe
