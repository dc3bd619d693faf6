// Stacked expert MLPs: initialisation as the dense MLP (xavier kernels, N(0, 1e-6) biases),
// per expert or one draw copied to all.
#include "models/stacked_experts.h"

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

Tensor StackedExperts::operator()(const Tensor& tokens) const {
  const ParameterStore& p = *store_;
  const int64_t e = tokens.size(0);
  // Weights in the tokens' dtype (bf16 in mixed precision; models/precision.h).
  const Tensor b1 = operand_for(p[fc1_bias_], tokens);                            // [E, M]
  const Tensor b2 = operand_for(p[fc2_bias_], tokens);                            // [E, D]
  Tensor h = bias_gelu(matmul(tokens, operand_for(p[fc1_kernel_], tokens)), b1);  // [E, R, M]
  return matmul(h, operand_for(p[fc2_kernel_], tokens)) +
         b2.reshape({e, 1, b2.size(1)});  // [E, R, D]
}

// Mirrors operator() above: two batched GEMMs, the fused bias + GELU, the second bias add, and
// the (bf16) casts of the experts' weights.
LayerCost StackedExperts::cost(int64_t experts, int64_t rows, DType x, DType param) const {
  const Shape& w1 = store_->infos()[fc1_kernel_].shape;  // [E, D, M]
  const int64_t d = w1[1], m = w1[2], n = experts * rows;
  LayerCost c;
  c.gemm(2 * n * d * m);
  c.gemm(2 * n * m * d);
  c.keep(2 * n * m, x);  // fc1 product, GELU
  c.keep(2 * n * d, x);  // fc2 product, + bias
  c.cast(experts * (2 * d * m + m + d), param, x);
  return c;
}

}  // namespace vmoe
