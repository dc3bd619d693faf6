// Subsets of a source.
#include "data/subset_source.h"

#include "data/data_error.h"

namespace vmoe::data {

SubsetSource::SubsetSource(std::shared_ptr<const ImageSource> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  for (int64_t i : indices_) {
    if (i < 0 || i >= base_->size()) {
      throw DataError("subset index " + std::to_string(i) + " is outside the " +
                      std::to_string(base_->size()) + " examples of its source");
    }
  }
}

std::vector<int64_t> evenly_spaced(int64_t n, int64_t count) {
  if (count >= n || count <= 0) count = n;
  std::vector<int64_t> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    out[size_t(i)] = i * n / count;
  return out;
}

}  // namespace vmoe::data
