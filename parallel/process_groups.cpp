// Process group layout and validation.
#include "parallel/process_groups.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#if VMOE_WITH_NCCL
#include "core/cuda/cuda_devices.h"
#include "parallel/nccl_communicator.h"
#endif

namespace vmoe {

int expert_group_size(int64_t num_experts, int world_size) {
  if (num_experts <= 0) return 1;
  return int(std::min<int64_t>(num_experts, world_size));
}

void validate_layout(int world_size, int64_t num_experts, int64_t global_batch,
                     int64_t images_per_group) {
  const std::string ranks = std::to_string(world_size) + " ranks";
  if (num_experts > 0) {
    const int pe = expert_group_size(num_experts, world_size);
    if (num_experts % pe != 0) {
      throw std::invalid_argument(std::to_string(num_experts) +
                                  " experts (model.moe.num_experts) cannot be split evenly " +
                                  "over an expert group of " + std::to_string(pe) +
                                  " ranks (min(E, P) with P = " + std::to_string(world_size) +
                                  "); use a rank count that divides or is a multiple of E");
    }
    if (world_size % pe != 0) {
      throw std::invalid_argument(
          ranks + " cannot form whole expert groups of " + std::to_string(pe) +
          " ranks (E = " + std::to_string(num_experts) + "); use a multiple or a divisor of E");
    }
  }
  if (global_batch % world_size != 0) {
    throw std::invalid_argument("global batch " + std::to_string(global_batch) +
                                " (data.batch_size) is not divisible by " + ranks);
  }
  const int64_t per_rank = global_batch / world_size;
  if (num_experts > 0 && images_per_group > 0 && per_rank % images_per_group != 0) {
    throw std::invalid_argument(
        "global batch " + std::to_string(global_batch) + " on " + ranks + " gives " +
        std::to_string(per_rank) + " images per rank, not a whole number of routing groups of " +
        std::to_string(images_per_group) + " images (model.moe.images_per_group)");
  }
}

ExpertShard ProcessGroups::expert_shard() const {
  if (num_experts <= 0) return {};
  const int64_t per_rank = num_experts / expert->size();
  return {num_experts, expert->rank() * per_rank, per_rank};
}

Tensor gather_experts(const ProcessGroups& groups, const Tensor& local) {
  Shape global = local.shape();
  global[0] *= groups.expert->size();
  Tensor out = Tensor::empty(global, local.dtype(), local.device());
  Tensor flat = out.reshape({out.numel()});
  groups.expert->all_gather(local.contiguous().reshape({local.numel()}), flat);
  return out;
}

ProcessGroups make_process_groups(std::shared_ptr<Communicator> world, int64_t num_experts,
                                  Device tensors) {
  const int p = world->size(), r = world->rank();
  const int pe = expert_group_size(num_experts, p);
  if (num_experts > 0 && (num_experts % pe != 0 || p % pe != 0)) {
    throw std::invalid_argument("cannot split " + std::to_string(num_experts) + " experts over " +
                                std::to_string(p) + " ranks");
  }
  ProcessGroups g;
  g.num_experts = num_experts;
  // What the groups of the model's tensors are split from.
  std::shared_ptr<Communicator> base = world;
#if VMOE_WITH_NCCL
  if (tensors.type == DeviceType::cuda && p > 1) {
    NcclOptions options;
    options.device = tensors.index;
    base = std::make_shared<NcclCommunicator>(world, options);
  }
#endif
  // Consecutive ranks (usually one node) form an expert group: the all-to-all stays local.
  g.expert = base->split(r / pe, r, "expert group");
  g.replica = base->split(r % pe, r, "replica group");
  g.gradient_world = std::move(base);
  g.world = std::move(world);
  return g;
}

Device rank_device(Device configured, int world_size) {
#if VMOE_WITH_NCCL
  if (configured.type == DeviceType::cuda && world_size > 1) {
    const CudaDevices found = query_cuda_devices();
    return {DeviceType::cuda,
            local_cuda_device(int(found.devices.size()), "train.device CUDA", found.problem)};
  }
#endif
  static_cast<void>(world_size);
  return configured;
}

}  // namespace vmoe
