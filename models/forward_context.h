// What a forward pass needs besides its inputs: training or evaluation, the keys that make
// dropout and routing noise a pure function of (seed, step, layer, global example), and the
// compute precision.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/rng.h"
#include "models/moe_report.h"
#include "models/precision.h"

namespace vmoe {

enum class Mode : uint8_t { train, eval };

struct ForwardContext {
  Mode mode = Mode::eval;
  RngKey key{};               // already specific to this step
  int64_t first_example = 0;  // global index of the batch's first example
  // Diagnostics: MoE layers append their reports here when set (VisionTransformer always sets
  // it). The auxiliary loss does not depend on it: layers return theirs (FeedForwardOutput).
  std::vector<MoeReport>* moe_reports = nullptr;
  bool record_routing = false;  // MoE layers fill MoeReport::routing
  // Test-time routing overrides; unset: the config's eval capacity factor and eval BPR.
  std::optional<double> eval_capacity_factor = std::nullopt;
  std::optional<bool> eval_batch_priority = std::nullopt;
  // Mixed precision (models/precision.h): bf16 activations and matmuls, f32 master weights.
  Precision precision = Precision::f32;
  bool training() const { return mode == Mode::train; }
};

}  // namespace vmoe
