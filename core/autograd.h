// Dynamic autograd tape: ops on tensors that require grad record a Node whose backward
// closure maps the output gradient to input gradients. backward() runs the nodes in reverse
// topological order and accumulates into leaves' .grad().
#pragma once
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

class Node {
 public:
  using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
  Node(const char* name, std::vector<Tensor> inputs, BackwardFn fn);

  const char* name() const { return name_; }
  // The profile region (core/op_profile.h) its forward op ran in: backward is charged to it.
  const char* region() const { return region_; }
  const std::vector<Tensor>& inputs() const { return inputs_; }
  // Returns one gradient per input (undefined where the input needs none).
  std::vector<Tensor> apply(const Tensor& grad_output) const {
    if (!fn_) {
      throw std::invalid_argument(std::string("backward through '") + name_ +
                                  "' a second time: the graph is freed after backward()");
    }
    return fn_(grad_output);
  }
  // Frees captured tensors once backward has run.
  void release() {
    fn_ = nullptr;
    inputs_.clear();
  }

 private:
  const char* name_;
  const char* region_;
  std::vector<Tensor> inputs_;
  BackwardFn fn_;
};

// Whether ops currently record the tape (thread-local).
bool grad_enabled();

// Turns recording off for its lifetime.
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Turns recording on for its lifetime: for a backward closure that re-runs a forward
// (core/checkpoint.h), since backward itself runs without recording.
class EnableGrad {
 public:
  EnableGrad();
  ~EnableGrad();
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool previous_;
};

// True when an op on these inputs must be recorded.
bool needs_grad(std::initializer_list<const Tensor*> inputs);

// Records `output` as produced by a node over `inputs`, if any of them requires grad.
void record(const char* name, Tensor& output, std::vector<Tensor> inputs, Node::BackwardFn fn);

// Runs backward from `root` with the gradient `seed` (same shape as root).
void run_backward(const Tensor& root, const Tensor& seed);

// One backward sweep from several roots, each with its seed (same shape; an undefined seed
// skips its root): the sweep a single root would make whose node had `roots` as inputs, in
// that order, so gradients meet in the same order as in that graph.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds);

// Told by backward() the moment a leaf's gradient is final (every node that could add to it
// has run), so that gradient reduction can start while backward goes on.
using LeafGradReadyFn = std::function<void(const Tensor& leaf)>;

// Installs `fn` for the outermost backward() calls of this thread during its lifetime
// (backward() calls nested inside a node's backward do not report).
class LeafGradReadyHook {
 public:
  explicit LeafGradReadyHook(LeafGradReadyFn fn);
  ~LeafGradReadyHook();
  LeafGradReadyHook(const LeafGradReadyHook&) = delete;
  LeafGradReadyHook& operator=(const LeafGradReadyHook&) = delete;

 private:
  LeafGradReadyFn fn_;
  const LeafGradReadyFn* previous_;
};

}  // namespace vmoe
