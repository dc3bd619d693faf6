// Checked arithmetic for sizes computed from outside input (file headers, configs, CLI
// arguments), and the documented limits every reader holds declared sizes to before it
// allocates anything (docs/hardening.md lists them).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/checked_math.h"
#include "data/data_error.h"

namespace vmoe::data {

// Largest image side any reader or preprocessing step accepts (JPEG's own limit is 65500).
inline constexpr int64_t kMaxImageSide = int64_t{1} << 16;
// Largest decoded image, in pixels (8192 x 8192; a 50-megapixel photo fits): a JPEG or PNG
// header declaring more is refused before its buffer is allocated.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

// The product of sizes (each >= 0) through core/checked_math.h; DataError
// "<what> = d0 x d1 x ... overflows 64 bits" (or "has a negative factor") naming every factor.
inline int64_t checked_product(std::initializer_list<int64_t> dims, const std::string& what) {
  auto fail = [&](const char* why) {
    std::string factors;
    for (int64_t d : dims)
      factors += (factors.empty() ? "" : " x ") + std::to_string(d);
    return DataError(what + " = " + factors + why);
  };
  int64_t out = 1;
  for (int64_t d : dims) {
    if (d < 0) throw fail(" has a negative factor");
    try {
      out = vmoe::checked_mul(out, d, what);
    } catch (const SizeOverflow&) {
      throw fail(" overflows 64 bits");
    }
  }
  return out;
}

// a * b for sizes (both >= 0), as checked_product.
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  return checked_product({a, b}, what);
}

// Throws DataError "<where>: <field> is <value>, expected at most <limit>" when value > limit.
inline void check_at_most(int64_t value, int64_t limit, const std::string& where,
                          const std::string& field) {
  if (value > limit) {
    throw DataError(where + ": " + field + " is " + std::to_string(value) + ", expected at most " +
                    std::to_string(limit));
  }
}

}  // namespace vmoe::data
