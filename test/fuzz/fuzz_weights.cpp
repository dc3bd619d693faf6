// Fuzzes the weights-file reader: read_weights_config and load_weights into a small store of
// the shapes make_seeds writes (so valid seeds load and mutations reach the value checks).
#include <cstdint>

#include "core/parameters.h"
#include "parallel/weights_file.h"
#include "test/fuzz/h5_edits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vmoe::fuzz::hdf5_input("weights.h5", data, size);
  vmoe::fuzz::expect_clean([&] { vmoe::read_weights_config(path); });
  vmoe::fuzz::expect_clean([&] {
    vmoe::ParameterStore params;
    params.declare("head/kernel", {3, 2}, {});
    params.declare("head/bias", {2}, {});
    params.allocate(0);
    vmoe::load_weights(path, params);
  });
  return 0;
}
