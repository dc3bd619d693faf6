// Fuzzes load_hdf5_shard: the input is written to a file and opened as a packed HDF5 shard.
#include <cstdint>

#include "data/hdf5_shards.h"
#include "test/fuzz/h5_edits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vmoe::fuzz::hdf5_input("shard.h5", data, size);
  vmoe::fuzz::expect_clean([&] { vmoe::data::load_hdf5_shard(path); });
  return 0;
}
