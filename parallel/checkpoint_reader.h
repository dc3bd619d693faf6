// Reading a training checkpoint file (format "vmoe-checkpoint-1", docs/checkpoints.md) on one
// process for tools (`vmoe ckpt`): its metadata, its tensors with shape, type and sharding, one
// tensor's values, and a full integrity check. Built on the plain-file wrapper (hdf5_file.h);
// the parallel writer and the training loader are in checkpoint.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hdf5/hdf5_file.h"

namespace vmoe {

// The root attributes of a checkpoint.
struct CheckpointMeta {
  std::string format;           // "vmoe-checkpoint-1"
  int64_t step = 0;             // optimizer updates done
  int64_t epoch = 0;            // data position: epoch ...
  int64_t index_in_epoch = 0;   // ... and global examples of it served
  int64_t optimizer_steps = 0;  // the optimizer's own step count
  int64_t seed = 0;
  std::string config;  // full config text (protobuf text format)
  int64_t world_size = 0, expert_group_size = 0, num_experts = 0;  // the writer's layout
  std::string created;                                             // ISO-8601 UTC
  std::string dtype;                                               // "f32" / "f64"
  std::string optimizer;                                           // "adamw" / "sgd"
};

// One dataset of a checkpoint.
struct CheckpointTensor {
  enum class Kind {
    param,      // params/<name>
    optimizer,  // optimizer/<slot>/<name>
    other,      // anything else (not part of the format)
  };
  std::string path;  // dataset path: "optimizer/adam_m/encoder/block_01/moe/experts/fc1/kernel"
  Kind kind = Kind::other;
  std::string slot;  // optimizer slot ("adam_m"), else ""
  std::string name;  // parameter name ("encoder/block_01/moe/experts/fc1/kernel"); path if other
  H5Type type = H5Type::f32;
  std::vector<int64_t> shape;
  std::string sharding;  // the dataset's `sharding` attribute; "" if missing or unreadable
  std::string problem;   // why type/shape/sharding could not be read ("" if they could)

  int64_t numel() const;
  int64_t bytes() const;  // numel() * element size (uncompressed)
};

class CheckpointReader {
 public:
  static constexpr const char* kFormat = "vmoe-checkpoint-1";

  enum class FormatCheck {
    require,  // the constructor throws unless the `format` attribute is kFormat
    skip,     // any HDF5 file opens (verify reports a bad format as a fault)
  };

  // Opens `path` read-only and lists its datasets. Throws Hdf5Error naming the file if it is
  // missing or not HDF5 (or truncated), std::runtime_error if the format does not match.
  explicit CheckpointReader(const std::string& path, FormatCheck check = FormatCheck::require);

  const std::string& path() const { return file_.path(); }
  const Hdf5File& file() const { return file_; }

  // Every root attribute; throws naming the file and the first missing or mistyped one.
  CheckpointMeta meta() const;

  // Every dataset, sorted by path.
  const std::vector<CheckpointTensor>& tensors() const { return tensors_; }
  // The tensor at dataset `path`, or nullptr.
  const CheckpointTensor* find(const std::string& path) const;

  // The stored array (checksums verified; throws Hdf5Error naming the dataset on a mismatch).
  H5Array read(const CheckpointTensor& t) const;
  // The values converted to double (floating and integer types).
  std::vector<double> read_values(const CheckpointTensor& t) const;

 private:
  Hdf5File file_;
  std::vector<CheckpointTensor> tensors_;
};

// H5Array elements as doubles (bf16 bits widened to float first).
std::vector<double> h5_values(const H5Array& a);

// Result of a full check of a checkpoint file.
struct CheckpointVerification {
  std::vector<std::string> faults;  // "<dataset or attribute>: <what is wrong>", one per fault
  int64_t tensors = 0;              // datasets in the file
  int64_t bytes_verified = 0;       // bytes of the datasets read back with matching checksums
  bool ok() const { return faults.empty(); }
};

// Reads every dataset (checksums) and checks the metadata: format string, required attributes
// present with the right kinds and plausible values, every dataset's sharding, dtype, finite
// values, optimizer tensors matching a parameter of the same shape, expert tensors with
// num_experts on their leading axis. Throws (naming the file) only if the file cannot be
// opened as HDF5 at all.
CheckpointVerification verify_checkpoint(const std::string& path);

}  // namespace vmoe
