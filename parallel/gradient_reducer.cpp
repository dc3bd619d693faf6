// Bucketed, overlapped gradient all-reduce.
#include "parallel/gradient_reducer.h"

#include "core/ops.h"
#include "core/optim/grad_clip.h"

namespace vmoe {

GradientReducer::GradientReducer(ParameterStore& params, const ProcessGroups& groups,
                                 int64_t bucket_bytes)
    : params_(&params), groups_(groups) {
  if (!params.allocated()) throw std::logic_error("GradientReducer needs an allocated store");
  const std::vector<ParamInfo>& infos = params.infos();
  const int64_t elem = int64_t(dtype_size(params.dtype()));
  // Reverse declaration order: the order in which backward finishes gradients, and (since
  // offsets grow with declaration) each bucket stays one contiguous range.
  for (size_t i = infos.size(); i-- > 0;) {
    const ParamInfo& p = infos[i];
    if (p.sharding != Sharding::replicated) continue;
    const int64_t n = shape_numel(p.local_shape);
    if (buckets_.empty() || (buckets_.back().end - buckets_.back().begin) * elem >= bucket_bytes)
      buckets_.push_back({p.offset, p.offset + n, 0, 0, {}});
    Bucket& b = buckets_.back();
    b.begin = p.offset;
    ++b.params;
    bucket_of_[params[i].impl().get()] = buckets_.size() - 1;
  }
}

Communicator& GradientReducer::gradient_world() const {
  return groups_.gradient_world ? *groups_.gradient_world : *groups_.world;
}

void GradientReducer::begin() {
  for (Bucket& b : buckets_)
    b.ready = 0;
  next_launch_ = 0;
  launched_early_ = 0;
}

void GradientReducer::launch_in_order() {
  const Tensor& flat = params_->flat_grads(Sharding::replicated);
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].ready == buckets_[next_launch_].params) {
    Bucket& b = buckets_[next_launch_++];
    b.request = gradient_world().iall_reduce(flat.slice(0, b.begin, b.end));
  }
}

void GradientReducer::leaf_ready(const Tensor& leaf) {
  if (groups_.world_size() == 1) return;
  auto it = bucket_of_.find(leaf.impl().get());
  if (it == bucket_of_.end()) return;
  ++buckets_[it->second].ready;
  launch_in_order();
  launched_early_ = next_launch_;
}

void GradientReducer::finish() {
  const int p = groups_.world_size();
  if (p == 1) return;
  // Parameters backward never reached (unused in this forward) have zero gradients.
  for (Bucket& b : buckets_)
    b.ready = b.params;
  launch_in_order();
  Tensor experts = params_->flat_grads(Sharding::expert);
  if (experts.numel() > 0 && groups_.replica->size() > 1)
    expert_request_ = groups_.replica->iall_reduce(experts);
  for (Bucket& b : buckets_)
    b.request.wait();
  expert_request_.wait();
  const double inv = 1.0 / double(p);
  for (int s = 0; s < kNumShardings; ++s) {
    Tensor g = params_->flat_grads(Sharding(s));
    if (g.numel() > 0) scale_(g, inv);
  }
}

Tensor GradientReducer::grad_norm_squared() const {
  const Tensor replicated = vmoe::grad_norm_squared(*params_, Sharding::replicated);
  Tensor experts = vmoe::grad_norm_squared(*params_, Sharding::expert);
  // Replicas hold identical expert gradients; the expert group holds every expert once.
  if (groups_.expert->size() > 1) groups_.expert->all_reduce(experts);
  return replicated + experts;
}

}  // namespace vmoe
