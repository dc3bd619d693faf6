// The one point where the MoE layer meets the parallel layer: dispatched tokens [E, R, D] go
// to the experts' owners and their outputs come back in the same layout. In one process the
// exchange just runs the local experts; the expert-parallel implementation
// (parallel/expert_parallel_exchange.h: all-to-all over the expert group, overlapped with
// compute) implements the same interface. Dropless routing uses the variable-size form
// (segments()): rows sorted by expert with a host count per expert. Header-only, so models/
// needs no link to parallel/.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

// Computes the experts held by this process: [E_local, rows, D] -> [E_local, rows, D]; where
// `occupied` [E_local * rows] i64 is given, only the rows with occupied >= 0 hold tokens (the
// others may be skipped and come back 0), else every row is computed.
using LocalExperts = std::function<Tensor(const Tensor& tokens, const Tensor& occupied)>;
// Computes the experts held by this process on rows sorted by local expert: rows
// [sum counts, D], counts[l] (host, length E_local, zeros allowed) the rows of local expert l
// -> their outputs [sum counts, D] in the same order.
using LocalSegments = std::function<Tensor(const Tensor& rows, const std::vector<int64_t>& counts)>;

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  // dispatched [E, R, D] -> expert outputs [E, R, D] (differentiable). `occupied` [E * R] i64
  // marks the rows that hold tokens (>= 0; undefined: all of them), for experts that skip the
  // others.
  virtual Tensor operator()(const Tensor& dispatched, const Tensor& occupied,
                            const LocalExperts& experts) const = 0;
  // Variable-size batches: rows [sum counts, D] sorted by expert, counts[e] (host, length E)
  // the rows of expert e -> the experts' outputs in the same layout (differentiable).
  virtual Tensor segments(const Tensor& rows, const std::vector<int64_t>& counts,
                          const LocalSegments& experts) const = 0;
};

// Single process: every expert is local.
class LocalExchange final : public ExpertExchange {
 public:
  Tensor operator()(const Tensor& dispatched, const Tensor& occupied,
                    const LocalExperts& experts) const override {
    return experts(dispatched, occupied);
  }
  Tensor segments(const Tensor& rows, const std::vector<int64_t>& counts,
                  const LocalSegments& experts) const override {
    return experts(rows, counts);
  }
};

}  // namespace vmoe
