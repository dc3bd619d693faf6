// Helpers for tests that run on any device: the test device the mains take from
// VMOE_TEST_DEVICE, and the check of kernel errors (core/kernel_errors.h), which a kernel throws
// at once on a host-readable device and records elsewhere until check_kernel_errors(device).
//
//   CHECK_KERNEL_ERROR(index_select(x, idx), "index 4 at position 1 is outside [-1, 4)");
#pragma once
#include <catch2/catch.hpp>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/backend.h"
#include "core/device.h"
#include "core/kernel_errors.h"

namespace vmoe::testing {

// Sets the default device from VMOE_TEST_DEVICE ("cpu" when unset or empty) and returns it.
// An unknown name, or a device without a backend in this build, is an std::invalid_argument
// naming the variable.
inline Device set_test_device_from_env() {
  const char* env = std::getenv("VMOE_TEST_DEVICE");
  Device device = kCpu;
  if (env != nullptr && *env != '\0') {
    try {
      device = parse_device(env);
      backend_for(device);
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("VMOE_TEST_DEVICE: ") + e.what());
    }
  }
  set_default_device(device);
  return device;
}

// Runs fn() and then checks `device`'s kernel errors, so that an error a kernel recorded
// instead of throwing surfaces here, as the same std::invalid_argument.
template <class Fn>
void run_and_check_kernel_errors(Device device, Fn&& fn) {
  fn();
  check_kernel_errors(device);
}

}  // namespace vmoe::testing

// An std::invalid_argument containing `text` (one line) from `expr` or from the kernel-error
// check of the default device that follows it.
#define CHECK_KERNEL_ERROR(expr, text)                                                      \
  do {                                                                                      \
    auto vmoe_run_ = [&] {                                                                  \
      ::vmoe::testing::run_and_check_kernel_errors(::vmoe::default_device(),                \
                                                   [&] { (void)(expr); });                  \
    };                                                                                      \
    CHECK_THROWS_AS(vmoe_run_(), std::invalid_argument);                                    \
    CHECK_THROWS_WITH(vmoe_run_(),                                                          \
                      Catch::Matchers::Contains(text) && !Catch::Matchers::Contains("\n")); \
  } while (false)
