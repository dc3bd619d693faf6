// Tape recording and the reverse-mode sweep.
#include "core/autograd.h"

#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "core/op_profile.h"
#include "core/ops.h"

namespace vmoe {

Node::Node(const char* name, std::vector<Tensor> inputs, BackwardFn fn)
    : name_(name),
      region_(current_profile_region()),
      inputs_(std::move(inputs)),
      fn_(std::move(fn)) {}

static thread_local bool g_grad_enabled = true;
static thread_local const LeafGradReadyFn* g_leaf_ready = nullptr;
static thread_local int g_backward_depth = 0;

LeafGradReadyHook::LeafGradReadyHook(LeafGradReadyFn fn)
    : fn_(std::move(fn)), previous_(g_leaf_ready) {
  g_leaf_ready = &fn_;
}
LeafGradReadyHook::~LeafGradReadyHook() {
  g_leaf_ready = previous_;
}

bool grad_enabled() {
  return g_grad_enabled;
}

NoGrad::NoGrad() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGrad::~NoGrad() {
  g_grad_enabled = previous_;
}

EnableGrad::EnableGrad() : previous_(g_grad_enabled) {
  g_grad_enabled = true;
}
EnableGrad::~EnableGrad() {
  g_grad_enabled = previous_;
}

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

void record(const char* name, Tensor& output, std::vector<Tensor> inputs, Node::BackwardFn fn) {
  output.set_requires_grad(true);
  output.set_grad_fn(std::make_shared<Node>(name, std::move(inputs), std::move(fn)));
}

namespace {

// Adds g into a leaf's .grad; an existing grad buffer (e.g. a view into a flat parameter
// gradient) is accumulated in place.
void accumulate_leaf(const Tensor& leaf, const Tensor& g) {
  Tensor current = leaf.grad();
  if (!current.defined()) {
    leaf.set_grad(g.dtype() == leaf.dtype() ? g.contiguous().clone() : to_dtype(g, leaf.dtype()));
    return;
  }
  add_(current, g.dtype() == current.dtype() ? g : to_dtype(g, current.dtype()));
}

// Sums another gradient into a node's pending one: in place where nothing else holds the
// pending tensor or its memory (no allocation, no third buffer; the same bits as add), else
// into a new tensor.
void accumulate_pending(Tensor& pending, const Tensor& g) {
  if (pending.impl().use_count() == 1 && pending.storage().use_count() == 1 &&
      pending.is_contiguous() && pending.dtype() == g.dtype() && pending.shape() == g.shape()) {
    add_(pending, g);
    return;
  }
  pending = add(pending, g);
}

bool is_leaf(const Tensor& t) {
  return t.defined() && t.requires_grad() && !t.grad_fn();
}

// Counts, per leaf, the graph edges still to deliver a gradient, and reports a leaf to the
// hook when its count reaches zero.
class LeafTracker {
 public:
  LeafTracker(const LeafGradReadyFn* hook, const std::vector<std::shared_ptr<Node>>& order)
      : hook_(hook) {
    if (!hook_) return;
    for (const auto& node : order)
      for (const Tensor& in : node->inputs())
        if (is_leaf(in)) ++pending_[in.impl().get()];
  }
  // A leaf that is itself a root: final unless a node of the graph also feeds it.
  void root_done(const Tensor& leaf) {
    if (hook_ && pending_.count(leaf.impl().get()) == 0) (*hook_)(leaf);
  }
  void edge_done(const Tensor& leaf) {
    if (!hook_) return;
    auto it = pending_.find(leaf.impl().get());
    if (it != pending_.end() && --it->second == 0) (*hook_)(leaf);
  }

 private:
  const LeafGradReadyFn* hook_;
  std::unordered_map<const void*, int> pending_;
};

struct DepthGuard {
  DepthGuard() { ++g_backward_depth; }
  ~DepthGuard() { --g_backward_depth; }
};

}  // namespace

void run_backward(const Tensor& root, const Tensor& seed) {
  if (!root.requires_grad()) {
    throw std::invalid_argument("backward() on a tensor that does not require grad");
  }
  Tensor g0 = seed;
  if (!g0.defined()) {
    if (root.numel() != 1) {
      throw std::invalid_argument("backward() without a seed needs a scalar, got " + root.desc());
    }
    g0 = Tensor::full(root.shape(), 1.0, root.dtype(), root.device());
  }
  run_backward(std::vector<Tensor>{root}, std::vector<Tensor>{g0});
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& seeds) {
  if (roots.size() != seeds.size()) {
    throw std::invalid_argument("backward() from " + std::to_string(roots.size()) + " roots with " +
                                std::to_string(seeds.size()) + " seeds");
  }
  for (size_t r = 0; r < roots.size(); ++r) {
    if (!seeds[r].defined()) continue;
    if (!roots[r].defined() || !roots[r].requires_grad()) {
      throw std::invalid_argument("backward() on a tensor that does not require grad");
    }
    if (seeds[r].shape() != roots[r].shape()) {
      throw std::invalid_argument("backward seed " + seeds[r].desc() + " does not match " +
                                  roots[r].desc());
    }
  }
  NoGrad no_grad;
  DepthGuard depth;
  ProfilePhaseScope phase(ProfilePhase::backward);
  const LeafGradReadyFn* hook = g_backward_depth == 1 ? g_leaf_ready : nullptr;
  // Topological order by iterative DFS (post-order) from each root in turn, then reverse.
  // Owning pointers: releasing a node's inputs must not free nodes still to be run.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> seen;
  for (size_t r = 0; r < roots.size(); ++r) {
    std::shared_ptr<Node> top = roots[r].defined() ? roots[r].grad_fn() : nullptr;
    if (!seeds[r].defined() || !top || !seen.insert(top.get()).second) continue;
    std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{top, 0}};
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->inputs().size()) {
        const Tensor& in = node->inputs()[next++];
        std::shared_ptr<Node> child = in.defined() ? in.grad_fn() : nullptr;
        if (child && seen.insert(child.get()).second) stack.push_back({std::move(child), 0});
      } else {
        order.push_back(std::move(node));
        stack.pop_back();
      }
    }
  }
  LeafTracker leaves(hook, order);
  std::unordered_map<Node*, Tensor> grads;
  for (size_t r = 0; r < roots.size(); ++r) {
    if (!seeds[r].defined()) continue;
    if (Node* node = roots[r].grad_fn().get()) {
      auto [slot, fresh] = grads.try_emplace(node, seeds[r]);
      if (!fresh) slot->second = add(slot->second, seeds[r]);
    } else {
      // A leaf root: its gradient is the seed; final now unless a node still adds to it.
      accumulate_leaf(roots[r], seeds[r]);
      leaves.root_done(roots[r]);
    }
  }
  for (size_t i = order.size(); i-- > 0;) {
    Node* node = order[i].get();
    auto it = grads.find(node);
    if (it == grads.end()) {
      for (const Tensor& in : node->inputs())
        if (is_leaf(in)) leaves.edge_done(in);
      node->release();
      continue;
    }
    ProfileRegion region(node->region());
    Tensor gout = std::move(it->second);
    grads.erase(it);
    std::vector<Tensor> gins = node->apply(gout);
    const auto& inputs = node->inputs();
    for (size_t j = 0; j < inputs.size() && j < gins.size(); ++j) {
      const Tensor& in = inputs[j];
      const Tensor& g = gins[j];
      if (!g.defined() || !in.defined() || !in.requires_grad()) {
        if (is_leaf(in)) leaves.edge_done(in);
        continue;
      }
      if (g.shape() != in.shape()) {
        throw std::logic_error(std::string("backward of ") + node->name() + " gave gradient " +
                               g.desc() + " for input " + in.desc());
      }
      if (Node* child = in.grad_fn().get()) {
        auto [slot, fresh] = grads.try_emplace(child, g);
        if (!fresh) accumulate_pending(slot->second, g);
      } else {
        accumulate_leaf(in, g);
        leaves.edge_done(in);
      }
    }
    for (size_t j = gins.size(); j < inputs.size(); ++j)
      if (is_leaf(inputs[j])) leaves.edge_done(inputs[j]);
    node->release();
  }
}

}  // namespace vmoe
