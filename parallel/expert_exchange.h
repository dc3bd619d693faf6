// The one point where the MoE layer meets the parallel layer: dispatched tokens [E, R, D] go
// to the experts' owners and their outputs come back in the same layout. In one process the
// exchange just runs the local experts; the expert-parallel implementation
// (parallel/expert_parallel_exchange.h: all-to-all over the expert group, overlapped with
// compute) implements the same interface. Header-only, so models/ needs no link to parallel/.
#pragma once
#include <functional>

#include "core/tensor.h"

namespace vmoe {

// Computes the experts held by this process: [E_local, rows, D] -> [E_local, rows, D].
using LocalExperts = std::function<Tensor(const Tensor& tokens)>;

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // dispatched [E, R, D] -> expert outputs [E, R, D] (differentiable).
  virtual Tensor operator()(const Tensor& dispatched, const LocalExperts& experts) const = 0;
};

// Single process: every expert is local.
class LocalExchange final : public ExpertExchange {
 public:
  Tensor operator()(const Tensor& dispatched, const LocalExperts& experts) const override {
    return experts(dispatched);
  }
};

}  // namespace vmoe
