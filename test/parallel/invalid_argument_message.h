// The message of an expected std::invalid_argument, for comparing whole error lines.
#pragma once
#include <stdexcept>
#include <string>

namespace vmoe::testing {

// What `f` throws as std::invalid_argument ("" if it does not throw).
template <class F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace vmoe::testing
