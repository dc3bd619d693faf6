// MLP block forward; initialisation as upstream (xavier kernels, N(0, 1e-6) biases).
#include "models/mlp_block.h"

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
  Tensor h = example_dropout(fc1_.with_gelu(x), dropout_rate_, ctx, "mlp_dropout1", stream);
  return {example_dropout(fc2_(h), dropout_rate_, ctx, "mlp_dropout2", stream), Tensor()};
}

}  // namespace vmoe
