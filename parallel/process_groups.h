// The communicators of a run (DESIGN.md "Process groups"): the world; the expert group, Pe =
// min(E, P) consecutive ranks that split every MoE layer's experts between them; the replica
// group, the P / Pe ranks (one per expert group) that hold the same experts. A dense model
// has Pe = 1: every rank is its own expert group and the replica group is the world.
// When the model's tensors are on CUDA (and NCCL is built) and there is more than one rank, the
// expert and replica groups and the gradient world are NcclCommunicators bootstrapped over the
// world; `world` itself stays the host communicator (MPI: checkpoints, host values).
#pragma once
#include <memory>

#include "core/device.h"
#include "core/parameters.h"
#include "parallel/communicator.h"

namespace vmoe {

struct ProcessGroups {
  std::shared_ptr<Communicator> world, expert, replica;
  // All ranks, for the model's tensors (the gradient all-reduce): `world` itself, or its NCCL
  // counterpart when the tensors are on CUDA.
  std::shared_ptr<Communicator> gradient_world;
  int64_t num_experts = 0;  // 0: no MoE layer

  int world_size() const { return world->size(); }
  int rank() const { return world->rank(); }
  bool is_root() const { return world->rank() == 0; }
  // The experts this rank holds (num_experts 0 when there are none to shard).
  ExpertShard expert_shard() const;
};

// Size of the expert group for E experts on P ranks: min(E, P) (1 without experts).
int expert_group_size(int64_t num_experts, int world_size);

// Checks that E experts, a global batch and routing groups of `images_per_group` images can be
// laid out on `world_size` ranks; throws std::invalid_argument naming the values otherwise.
// num_experts 0 = dense model (only the batch split is checked).
void validate_layout(int world_size, int64_t num_experts, int64_t global_batch,
                     int64_t images_per_group);

// An expert parameter's global value [E, ...] from every owner's [E / Pe, ...] slice, on
// local's device (collective over the expert group).
Tensor gather_experts(const ProcessGroups& groups, const Tensor& local);

// Splits `world` (collective). Throws if the experts cannot be split evenly. `tensors`: the
// device of the model's tensors (CUDA with several ranks: NCCL groups on that device).
ProcessGroups make_process_groups(std::shared_ptr<Communicator> world, int64_t num_experts,
                                  Device tensors = kCpu);

// The device of this rank's tensors for the configured one: in a multi-rank job CUDA becomes
// cuda:(local rank modulo the node's GPUs), so that the ranks of a node use one GPU each.
Device rank_device(Device configured, int world_size);

}  // namespace vmoe
