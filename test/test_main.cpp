// The Catch2 main shared by every non-MPI test executable. VMOE_TEST_DEVICE ("cpu", the
// default, "cpu_strict" or "cuda") sets the default device before any test runs, so that the
// whole suite also runs on the strict test device (core/device.h) or on the GPU. A device this
// build or machine lacks ends the run at once with exit code 2 and the reason on one line
// ("VMOE_TEST_DEVICE: cuda:0 is not available: ..."), before any test could pass on the CPU.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <exception>

#include "core/cpu/blas_kernels.h"
#include "test/core/device_testing.h"

int main(int argc, char* argv[]) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  try {
    vmoe::testing::set_test_device_from_env();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return Catch::Session().run(argc, argv);
}
