// Activation checkpointing: the segment node and its recomputing backward.
#include "core/checkpoint.h"

#include <memory>
#include <stdexcept>

#include "core/autograd.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// What the segment's backward needs: the segment, its inputs, and the gradients of its
// secondary outputs, delivered (by their own nodes) before the main output's.
struct Segment {
  SegmentFn fn;
  std::vector<Tensor> inputs;
  std::vector<Tensor> output_grads;  // [outputs]; [0] unused
};

// Re-runs the segment on detached copies of its inputs, recording, and sweeps back from all
// outputs that received a gradient. Returns the inputs' gradients (none for the parameters).
std::vector<Tensor> recompute_backward(Segment& s, const Tensor& grad_output) {
  std::vector<Tensor> leaves;
  for (const Tensor& in : s.inputs) {
    if (in.defined() && in.requires_grad()) {
      Tensor leaf = in.detach();
      leaf.set_requires_grad(true);
      leaves.push_back(leaf);
    } else {
      leaves.push_back(in);
    }
  }
  std::vector<Tensor> outputs;
  {
    EnableGrad recording;
    outputs = s.fn(leaves, CheckpointPass::recompute);
  }
  if (outputs.size() != s.output_grads.size()) {
    throw std::logic_error("checkpoint: the segment returned " + std::to_string(outputs.size()) +
                           " outputs on recompute, " + std::to_string(s.output_grads.size()) +
                           " in forward");
  }
  std::vector<Tensor> roots, seeds;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const Tensor& g = k == 0 ? grad_output : s.output_grads[k];
    if (!g.defined() || !outputs[k].defined() || !outputs[k].requires_grad()) continue;
    roots.push_back(outputs[k]);
    seeds.push_back(g);
  }
  if (!roots.empty()) run_backward(roots, seeds);
  std::vector<Tensor> grads;
  for (size_t i = 0; i < s.inputs.size(); ++i)
    grads.push_back(leaves[i].defined() && leaves[i].requires_grad() ? leaves[i].grad() : Tensor());
  s.inputs.clear();
  s.output_grads.clear();
  return grads;
}

bool any_requires_grad(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

}  // namespace

std::vector<Tensor> checkpoint(const SegmentFn& fn, const std::vector<Tensor>& inputs,
                               const std::vector<Tensor>& params) {
  std::vector<Tensor> outputs;
  {
    NoGrad not_recording;
    outputs = fn(inputs, CheckpointPass::forward);
  }
  if (outputs.empty() || !outputs[0].defined())
    throw std::invalid_argument("checkpoint: the segment's first output must be defined");
  if (!grad_enabled() || !(any_requires_grad(inputs) || any_requires_grad(params))) return outputs;

  auto segment = std::make_shared<Segment>(Segment{fn, inputs, {}});
  segment->output_grads.resize(outputs.size());
  std::vector<Tensor> node_inputs = inputs;
  node_inputs.insert(node_inputs.end(), params.begin(), params.end());
  // Fresh handles: an output may alias an input (or another output), whose grad_fn must stay.
  for (Tensor& out : outputs)
    if (out.defined()) out = out.detach();
  record("checkpoint", outputs[0], std::move(node_inputs),
         [segment](const Tensor& g) { return recompute_backward(*segment, g); });
  for (size_t k = 1; k < outputs.size(); ++k) {
    if (!outputs[k].defined() || !is_floating(outputs[k].dtype())) continue;
    // Consumes the main output, so the sweep runs it first: it only hands its gradient on.
    record("checkpoint_output", outputs[k], {outputs[0]}, [segment, k](const Tensor& g) {
      Tensor& slot = segment->output_grads[k];
      slot = slot.defined() ? add(slot, g) : g;
      return std::vector<Tensor>{Tensor()};
    });
  }
  return outputs;
}

}  // namespace vmoe
