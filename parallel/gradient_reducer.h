// Data-parallel gradient reduction (DESIGN.md "Gradients"). After backward every rank must hold
// the gradient of the global loss, the mean of the ranks' local (per-slice mean) losses:
// - replicated parameters: sum over all ranks / P, in buckets of consecutive parameters whose
//   all-reduce starts as soon as backward has finished the bucket's last gradient;
// - expert parameters: the owner already summed its expert group's contributions through the
//   exchange's backward, so: sum over the replica group / P.
// Buckets are launched strictly in bucket order, so every rank posts the same collectives in
// the same order.
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/parameters.h"
#include "parallel/process_groups.h"

namespace vmoe {

class GradientReducer {
 public:
  // `bucket_bytes`: target size of a bucket of replicated gradients.
  GradientReducer(ParameterStore& params, const ProcessGroups& groups,
                  int64_t bucket_bytes = int64_t(4) << 20);

  // Call before backward; then leaf_ready() from a LeafGradReadyHook during backward, then
  // finish() after it.
  void begin();
  void leaf_ready(const Tensor& leaf);
  void finish();

  // [] f64 on the store's device: the squared global L2 norm of the (reduced) gradients over
  // all experts and replicated parameters, for GradClip. Nothing is read back to the host; the
  // experts' part is all-reduced over the expert group (collective over it).
  Tensor grad_norm_squared() const;

  const ProcessGroups& groups() const { return groups_; }
  size_t num_buckets() const { return buckets_.size(); }
  // Buckets launched before finish() in the last step (started while backward ran).
  size_t buckets_launched_early() const { return launched_early_; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // element range of the replicated flat gradient
    int params = 0;              // parameters in it
    int ready = 0;
    CommRequest request;
  };
  void launch_in_order();
  // The all-ranks communicator of the gradients (NCCL for CUDA tensors; groups_.world else).
  Communicator& gradient_world() const;

  ParameterStore* params_;
  ProcessGroups groups_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const void*, size_t> bucket_of_;  // parameter value impl -> bucket
  size_t next_launch_ = 0, launched_early_ = 0;
  CommRequest expert_request_;
};

}  // namespace vmoe
