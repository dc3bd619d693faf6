// Dropout on a batch-major tensor whose mask depends on the global example index, so that
// a batch split over ranks drops exactly what the single-process run drops.
#pragma once
#include <string_view>

#include "core/ops.h"
#include "models/forward_context.h"

namespace vmoe {

// x [B, ...]; identity in evaluation or when rate is 0.
inline Tensor example_dropout(const Tensor& x, double rate, const ForwardContext& ctx,
                              std::string_view tag, uint64_t stream) {
  if (!ctx.training() || rate == 0) return x;
  const int64_t per_example = x.size(0) ? x.numel() / x.size(0) : 0;
  return dropout(x, rate, derive(ctx.key, tag, stream), uint64_t(ctx.first_example * per_example));
}

}  // namespace vmoe
