// Activation checkpointing (recomputation): a segment of the forward pass whose intermediate
// activations are not kept for backward. The forward runs the segment without recording; one
// node stands for the whole segment, and its backward re-runs the segment with recording on
// (from its saved inputs) and differentiates through the re-run. A deterministic segment (its
// randomness keyed by the same keys both times) then gives bit-identical gradients: the nested
// sweep runs the segment's nodes in the order the whole graph would (autograd.h, run_backward
// over several roots), so every gradient is summed in the same order, provided the segment's
// inputs are read only by the segment and its outputs only outside it (as an encoder block's).
// Otherwise the parts of such a tensor's gradient are summed in another order: equal to
// rounding.
#pragma once
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

enum class CheckpointPass : uint8_t {
  forward,    // the first run, without recording (side effects such as reports belong here)
  recompute,  // the re-run in backward, recorded
};

// The segment: inputs -> outputs. It must compute the same values on both passes.
using SegmentFn =
    std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs, CheckpointPass pass)>;

// Returns fn(inputs, forward). outputs[0] must be defined: it is the segment's main output, and
// backward reaches the segment through it (the other outputs' gradients wait for it; an output
// may be undefined). `params`: leaves fn reads besides `inputs` (parameters): the nested sweep
// adds their gradients to .grad, and listing them tells the outer sweep when they are final
// (LeafGradReadyHook). Without recording (NoGrad, or nothing requiring grad) this is fn.
std::vector<Tensor> checkpoint(const SegmentFn& fn, const std::vector<Tensor>& inputs,
                               const std::vector<Tensor>& params = {});

}  // namespace vmoe
