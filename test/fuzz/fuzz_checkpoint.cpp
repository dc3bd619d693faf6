// Fuzzes the checkpoint readers: the tool reader of `vmoe ckpt` (opened without the format
// check: metadata, every tensor's values, the full verification) and the training loader of a
// resume (load_checkpoint into the store and AdamW state the template was written from).
#include <cstdint>
#include <memory>

#include "core/optim/adamw.h"
#include "parallel/checkpoint.h"
#include "parallel/checkpoint_reader.h"
#include "test/fuzz/fuzz_checkpoint_store.h"
#include "test/fuzz/h5_edits.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vmoe::fuzz::hdf5_input("ckpt.h5", data, size);
  vmoe::fuzz::expect_clean([&] {
    const vmoe::CheckpointReader reader(path, vmoe::CheckpointReader::FormatCheck::skip);
    vmoe::fuzz::expect_clean([&] { reader.meta(); });
    for (const vmoe::CheckpointTensor& t : reader.tensors()) {
      vmoe::fuzz::expect_clean([&] { reader.read_values(t); });
    }
  });
  vmoe::fuzz::expect_clean([&] { vmoe::verify_checkpoint(path); });
  vmoe::fuzz::expect_clean([&] {
    vmoe::ParameterStore store;
    vmoe::fuzz::declare_checkpoint_seed_params(store);
    vmoe::AdamW optimizer(store, vmoe::AdamWOptions{});
    vmoe::load_checkpoint(path, store, optimizer);
  });
  return 0;
}
