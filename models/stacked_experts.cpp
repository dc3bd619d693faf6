// Stacked expert MLPs: initialisation as the dense MLP (xavier kernels, N(0, 1e-6) biases),
// per expert or one draw copied to all.
#include "models/stacked_experts.h"

#include <stdexcept>

#include "models/precision.h"

namespace vmoe {

StackedExperts::StackedExperts(ParameterStore& store, const std::string& prefix,
                               int64_t num_experts, int64_t dim, int64_t mlp_dim, ExpertInit init)
    : store_(&store), num_experts_(num_experts) {
  const bool same = init == ExpertInit::identical;
  auto spec = [same](InitSpec s) {
    s.same_for_leading = same;
    return s;
  };
  const int64_t e = num_experts;
  fc1_kernel_ = store.declare(prefix + "/fc1/kernel", {e, dim, mlp_dim},
                              spec(InitSpec::xavier_uniform(double(dim), double(mlp_dim))),
                              WeightDecay::yes, Sharding::expert);
  fc1_bias_ = store.declare(prefix + "/fc1/bias", {e, mlp_dim}, spec(InitSpec::normal(1e-6)),
                            WeightDecay::no, Sharding::expert);
  fc2_kernel_ = store.declare(prefix + "/fc2/kernel", {e, mlp_dim, dim},
                              spec(InitSpec::xavier_uniform(double(mlp_dim), double(dim))),
                              WeightDecay::yes, Sharding::expert);
  fc2_bias_ = store.declare(prefix + "/fc2/bias", {e, dim}, spec(InitSpec::normal(1e-6)),
                            WeightDecay::no, Sharding::expert);
}

Tensor StackedExperts::operator()(const Tensor& tokens, const Tensor& occupied) const {
  const ParameterStore& p = *store_;
  // Weights in the tokens' dtype (bf16 in mixed precision; models/precision.h).
  const Tensor b1 = operand_for(p[fc1_bias_], tokens);  // [E, M]
  const Tensor b2 = operand_for(p[fc2_bias_], tokens);  // [E, D]
  if (occupied.defined() && expert_mlp_is_fused(tokens.device(), tokens.dtype()))
    return expert_mlp(tokens, occupied, operand_for(p[fc1_kernel_], tokens), b1,
                      operand_for(p[fc2_kernel_], tokens), b2);                   // [E, R, D]
  Tensor h = bias_gelu(matmul(tokens, operand_for(p[fc1_kernel_], tokens)), b1);  // [E, R, M]
  return stacked_linear(h, operand_for(p[fc2_kernel_], tokens), b2);              // [E, R, D]
}

Tensor StackedExperts::segments(const Tensor& rows, const std::vector<int64_t>& counts,
                                int64_t first_expert) const {
  const ParameterStore& p = *store_;
  const Tensor& w1_all = p[fc1_kernel_];  // [E, D, M] (this rank's experts when sharded)
  const int64_t held = w1_all.size(0), d = w1_all.size(1), m = w1_all.size(2);
  const int64_t n = int64_t(counts.size());
  int64_t total = 0;
  for (int64_t c : counts) {
    if (c < 0)
      throw std::invalid_argument("expert segments: negative row count " + std::to_string(c));
    total += c;
  }
  if (first_expert < 0 || first_expert + n > held || rows.dim() != 2 || rows.size(0) != total ||
      rows.size(1) != d) {
    throw std::invalid_argument(
        "expert segments: rows " + rows.desc() + " for " + std::to_string(n) + " experts from " +
        std::to_string(first_expert) + " (counts sum " + std::to_string(total) + ") of " +
        std::to_string(held) + " experts of dim " + std::to_string(d));
  }
  // Weights in the rows' dtype (bf16 in mixed precision), cast once for all experts.
  const Tensor w1 = operand_for(w1_all, rows);          // [E, D, M]
  const Tensor b1 = operand_for(p[fc1_bias_], rows);    // [E, M]
  const Tensor w2 = operand_for(p[fc2_kernel_], rows);  // [E, M, D]
  const Tensor b2 = operand_for(p[fc2_bias_], rows);    // [E, D]
  std::vector<Tensor> outs;
  int64_t at = 0;
  for (int64_t l = 0; l < n; ++l) {
    const int64_t c = counts[size_t(l)];
    // Without any rows at all, the first expert still runs on none, so that the parameters
    // are part of the graph (zero gradients, and every rank's reducer sees them).
    if (c == 0 && !(total == 0 && l == 0)) continue;
    const int64_t e = first_expert + l;
    const Tensor x = rows.slice(0, at, at + c);  // [c, D]
    Tensor h = bias_gelu(matmul(x, w1.slice(0, e, e + 1).reshape({d, m})),
                         b1.slice(0, e, e + 1).reshape({m}));  // [c, M]
    outs.push_back(linear(h, w2.slice(0, e, e + 1).reshape({m, d}),
                          b2.slice(0, e, e + 1).reshape({d})));  // [c, D]
    at += c;
  }
  if (outs.empty()) return rows;  // no experts
  return outs.size() == 1 ? outs[0] : concat(outs, 0);
}

namespace {

// The experts' GEMMs, the fused bias + GELU, the second layer (its bias added by the GEMM), and
// the (bf16) casts of the experts' weights, on n rows in all.
LayerCost gemm_cost(int64_t experts, int64_t n, int64_t d, int64_t m, DType x, DType param) {
  LayerCost c;
  c.gemm(2 * n * d * m);
  c.gemm(2 * n * m * d);
  c.keep(2 * n * m, x);  // fc1 product, GELU
  c.keep(n * d, x);      // fc2 product with its bias
  c.cast(experts * (2 * d * m + m + d), param, x);
  return c;
}

}  // namespace

// Mirrors operator() above.
LayerCost StackedExperts::cost(int64_t experts, int64_t rows, DType x, DType param) const {
  const Shape& w1 = store_->infos()[fc1_kernel_].shape;  // [E, D, M]
  return gemm_cost(experts, experts * rows, w1[1], w1[2], x, param);
}

// Mirrors segments(): the same tensors per expert with rows, and the joined output [n, D]
// (the concat's node holds the experts' outputs) when more than one expert runs, as assumed.
LayerCost StackedExperts::segments_cost(int64_t experts, int64_t n, DType x, DType param) const {
  const Shape& w1 = store_->infos()[fc1_kernel_].shape;  // [E, D, M]
  LayerCost c = gemm_cost(experts, n, w1[1], w1[2], x, param);
  if (experts > 1) c.keep(n * w1[1], x);
  return c;
}

}  // namespace vmoe
