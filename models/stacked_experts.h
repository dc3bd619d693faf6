// The E experts of one MoE layer, each a full MLP Dense(M) -> GELU -> Dense(D), stored stacked
// (fc1 kernel [E, D, M], bias [E, M], fc2 kernel [E, M, D], bias [E, D]) so that all experts
// run as one batched GEMM and a rank can hold a contiguous slice of them.
#pragma once
#include <string>

#include "core/ops.h"
#include "core/parameters.h"
#include "models/layer_cost.h"

namespace vmoe {

enum class ExpertInit : bool { independent = false, identical = true };

class StackedExperts {
 public:
  StackedExperts(ParameterStore& store, const std::string& prefix, int64_t num_experts, int64_t dim,
                 int64_t mlp_dim, ExpertInit init);
  // tokens [E, R, D] -> [E, R, D]
  Tensor operator()(const Tensor& tokens) const;
  int64_t num_experts() const { return num_experts_; }
  // operator() on [experts, rows, D] tokens of dtype x (parameters of dtype `param`).
  LayerCost cost(int64_t experts, int64_t rows, DType x, DType param) const;

 private:
  const ParameterStore* store_;
  int64_t num_experts_;
  ParamId fc1_kernel_, fc1_bias_, fc2_kernel_, fc2_bias_;
};

}  // namespace vmoe
