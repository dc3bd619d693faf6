// MLP block forward; initialisation as upstream (xavier kernels, N(0, 1e-6) biases).
#include "models/mlp_block.h"

#include "core/op_profile.h"
#include "models/example_dropout.h"

namespace vmoe {

MlpBlock::MlpBlock(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t mlp_dim,
                   double dropout_rate)
    : dropout_rate_(dropout_rate),
      fc1_(store, prefix + "/fc1", dim, mlp_dim,
           InitSpec::xavier_uniform(double(dim), double(mlp_dim)), InitSpec::normal(1e-6)),
      fc2_(store, prefix + "/fc2", mlp_dim, dim,
           InitSpec::xavier_uniform(double(mlp_dim), double(dim)), InitSpec::normal(1e-6)) {}

FeedForwardOutput MlpBlock::operator()(const Tensor& x, const ForwardContext& ctx,
                                       uint64_t stream) const {
  ProfileRegion region("mlp");
  Tensor h = example_dropout(fc1_.with_gelu(x), dropout_rate_, ctx, "mlp_dropout1", stream);
  return {example_dropout(fc2_(h), dropout_rate_, ctx, "mlp_dropout2", stream), Tensor()};
}

// Mirrors operator() above: fc1, the fused bias + GELU (keeps its input and output), fc2, and
// the dropout masks and products when dropout is on.
LayerCost MlpBlock::cost(const CostShape& s, int64_t tokens) const {
  const int64_t rows = s.batch * tokens, m = fc1_.out_features(), d = fc2_.out_features();
  const bool dropout = s.training && dropout_rate_ > 0;
  LayerCost c = fc1_.cost(rows, s.activation, s.param);
  c.keep(rows * m, s.activation);  // GELU
  if (dropout) c.keep(2 * rows * m, s.activation);
  c += fc2_.cost(rows, s.activation, s.param);
  if (dropout) c.keep(2 * rows * d, s.activation);
  return c;
}

}  // namespace vmoe
