// Fisher-Yates shuffle keyed by (seed, epoch); written out rather than std::shuffle, whose
// results differ between standard libraries.
#include "data/epoch_order.h"

#include <numeric>
#include <string>
#include <utility>

#include "data/counter_hash.h"
#include "data/data_error.h"

namespace vmoe::data {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  if (n < 0) throw DataError("epoch_permutation: n must be >= 0, got " + std::to_string(n));
  if (epoch < 0) {
    throw DataError("epoch_permutation: epoch must be >= 0, got " + std::to_string(epoch));
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(
        uniform_below(seed, RandomStream::shuffle, static_cast<uint64_t>(epoch),
                      static_cast<uint64_t>(i), static_cast<uint64_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

}  // namespace vmoe::data
