// The Catch2 main shared by every non-MPI test executable. VMOE_TEST_DEVICE ("cpu", the
// default, or "cpu_strict") sets the default device before any test runs, so that the whole
// suite also runs on the strict test device (core/device.h).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <exception>

#include "test/core/device_testing.h"

int main(int argc, char* argv[]) {
  try {
    vmoe::testing::set_test_device_from_env();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return Catch::Session().run(argc, argv);
}
