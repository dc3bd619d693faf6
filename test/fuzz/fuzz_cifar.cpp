// Fuzzes the CIFAR readers: the input is the test file of CIFAR-10 (test_batch.bin) and of
// CIFAR-100 (test.bin).
#include <cstdint>

#include "data/cifar_reader.h"
#include "test/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmoe::fuzz::write_input("test_batch.bin", data, size);
  vmoe::fuzz::write_input("test.bin", data, size);
  const std::string dir = vmoe::fuzz::scratch_dir().string();
  vmoe::fuzz::expect_clean([&] { vmoe::data::load_cifar10(dir, vmoe::data::Split::test); });
  vmoe::fuzz::expect_clean([&] { vmoe::data::load_cifar100(dir, vmoe::data::Split::test); });
  return 0;
}
