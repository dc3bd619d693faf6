// The E experts of one MoE layer, each a full MLP Dense(M) -> GELU -> Dense(D), stored stacked
// (fc1 kernel [E, D, M], bias [E, M], fc2 kernel [E, M, D], bias [E, D]) so that all experts
// run as one batched GEMM and a rank can hold a contiguous slice of them.
#pragma once
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/parameters.h"
#include "models/layer_cost.h"

namespace vmoe {

enum class ExpertInit : bool { independent = false, identical = true };

class StackedExperts {
 public:
  StackedExperts(ParameterStore& store, const std::string& prefix, int64_t num_experts, int64_t dim,
                 int64_t mlp_dim, ExpertInit init);
  // tokens [E, R, D] -> [E, R, D]. Given `occupied` [E * R] i64 (assign_slots' dispatch rows:
  // >= 0 where a row holds a token) and a backend that fuses expert_mlp, only those rows are
  // computed and the others are 0 (core/ops.h expert_mlp); else every row is. Either way the
  // rows that hold tokens get the same values and the same tensors are kept for backward.
  Tensor operator()(const Tensor& tokens, const Tensor& occupied = Tensor()) const;
  // Variable-size batches (dropless routing): rows [sum counts, D] sorted by expert, counts[l]
  // rows for expert first_expert + l -> [sum counts, D]. Each expert's GEMMs run on its
  // contiguous rows through slices of the stacked parameters; experts without rows are skipped
  // (their slices get zero gradients).
  Tensor segments(const Tensor& rows, const std::vector<int64_t>& counts,
                  int64_t first_expert = 0) const;
  int64_t num_experts() const { return num_experts_; }
  // operator() on [experts, rows, D] tokens of dtype x (parameters of dtype `param`).
  LayerCost cost(int64_t experts, int64_t rows, DType x, DType param) const;
  // segments() on `rows` rows in all over `experts` experts.
  LayerCost segments_cost(int64_t experts, int64_t rows, DType x, DType param) const;

 private:
  const ParameterStore* store_;
  int64_t num_experts_;
  ParamId fc1_kernel_, fc1_bias_, fc2_kernel_, fc2_bias_;
};

}  // namespace vmoe
