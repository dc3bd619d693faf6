// A single-process weights file: every parameter of a ParameterStore as an HDF5 dataset under
// its hierarchical name ("params/encoder/block_00/mlp/fc1/kernel"), plus the config text and
// step as root attributes. Written under a temporary name and renamed, so an interrupted save
// never replaces a good file with a broken one. (The sharded training checkpoint is separate.)
#pragma once
#include <string>
#include <vector>

#include "core/parameters.h"

namespace vmoe {

void save_weights(const std::string& path, const ParameterStore& params,
                  const std::string& config_text, int64_t step);
// The same from named global tensors (e.g. expert parameters gathered from their owners).
struct NamedTensor {
  std::string name;
  Tensor value;
};
void save_weights(const std::string& path, const std::vector<NamedTensor>& params,
                  const std::string& config_text, int64_t step);

// Loads values into an allocated store (an expert-sharded store takes its experts' slice).
// Every parameter must be present with its global shape and an f32 or f64 type (converted to
// the store's dtype); the first missing or mismatching one is named in the error, with the file.
// Each dataset's type, shape and stored bytes are checked before it is read (hdf5_checks.h).
void load_weights(const std::string& path, ParameterStore& params);

// The config text stored with the weights.
std::string read_weights_config(const std::string& path);

}  // namespace vmoe
