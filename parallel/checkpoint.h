// Sharded training checkpoints (format "vmoe-checkpoint-1", docs/checkpoints.md): one HDF5
// file per checkpoint holding every parameter and optimizer slot at its GLOBAL shape
// (params/<name>, optimizer/<slot>/<name>), written collectively with parallel HDF5 (MPI-IO):
// replicated tensors by rank 0, expert tensors [E, ...] as hyperslabs by their owners. Every
// dataset is chunked with a Fletcher32 checksum. Written under a temporary name, closed, given
// its metadata, then renamed by rank 0 once every rank finished: a file with the final name is
// always complete. Any rank count for which the layout is valid can load it (resharding).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/optim/optimizer.h"
#include "core/parameters.h"
#include "parallel/process_groups.h"

namespace vmoe {

// Where a run stands, besides its tensors. Random streams are pure functions of (seed, step,
// global example), so the step and the data position are the whole random state.
struct TrainingPosition {
  int64_t step = 0;  // optimizer updates done
  int64_t epoch = 0;
  int64_t index_in_epoch = 0;  // global examples of `epoch` served
};

struct CheckpointInfo {
  TrainingPosition position;
  int64_t optimizer_steps = 0;
  uint64_t seed = 0;
  std::string config_text;
  std::string optimizer;  // "adamw" / "sgd"
};

// Writes the checkpoint of `step` into `dir` (collective over groups.world) as
// dir/ckpt_<step>.h5 and keeps the newest `keep` checkpoints (0 = all). Returns the path.
std::string save_checkpoint(const std::filesystem::path& dir, const ParameterStore& params,
                            const Optimizer& optimizer, const std::string& optimizer_name,
                            const ProcessGroups& groups, const CheckpointInfo& info, int keep);

// Loads `path` into an allocated store and optimizer (each rank reads its own experts).
// Every attribute and tensor is checked before it is read: throws Hdf5Error on a damaged file
// (unreadable, truncated, a tensor declaring more than the file stores, a failed checksum) and
// std::runtime_error naming the file and the first field that does not fit: a negative
// position (check_position), a `dtype` attribute or tensor element type other than the model's,
// a missing tensor or one of another shape. Not collective.
CheckpointInfo load_checkpoint(const std::string& path, ParameterStore& params,
                               Optimizer& optimizer);

// Throws std::runtime_error naming `path` and the field if the step, epoch, index_in_epoch or
// optimizer_steps of `info` is negative.
void check_position(const std::string& path, const CheckpointInfo& info);

// Complete checkpoints in `dir` (ckpt_<step>.h5), newest first.
std::vector<std::string> list_checkpoints(const std::filesystem::path& dir);

}  // namespace vmoe
