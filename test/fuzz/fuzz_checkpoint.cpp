// Fuzzes the checkpoint reader used by `vmoe ckpt`: open without the format check, read the
// metadata, every tensor's values, and the full verification.
#include <cstdint>

#include "parallel/checkpoint_reader.h"
#include "test/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vmoe::fuzz::write_input("ckpt.h5", data, size);
  vmoe::fuzz::expect_clean([&] {
    const vmoe::CheckpointReader reader(path, vmoe::CheckpointReader::FormatCheck::skip);
    vmoe::fuzz::expect_clean([&] { reader.meta(); });
    for (const vmoe::CheckpointTensor& t : reader.tensors()) {
      vmoe::fuzz::expect_clean([&] { reader.read_values(t); });
    }
  });
  vmoe::fuzz::expect_clean([&] { vmoe::verify_checkpoint(path); });
  return 0;
}
