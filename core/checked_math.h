// Checked arithmetic for sizes computed from outside input (configs, command-line options, file
// headers): a product or sum that does not fit in int64 is an error naming what was being
// computed, never a silent wrap into a negative shape, a zero divisor or a short run.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vmoe {

// A size computation that overflowed 64 bits; the message names the quantity and its factors.
class SizeOverflow : public std::overflow_error {
 public:
  using std::overflow_error::overflow_error;
};

// a * b, or SizeOverflow "WHAT: A x B does not fit in 64 bits".
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) {
    throw SizeOverflow(what + ": " + std::to_string(a) + " x " + std::to_string(b) +
                       " does not fit in 64 bits");
  }
  return out;
}

// a + b, or SizeOverflow "WHAT: A + B does not fit in 64 bits".
inline int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out)) {
    throw SizeOverflow(what + ": " + std::to_string(a) + " + " + std::to_string(b) +
                       " does not fit in 64 bits");
  }
  return out;
}

}  // namespace vmoe
