// The in-memory source.
#include "data/image_source.h"

#include <algorithm>

#include "data/data_error.h"

namespace vmoe::data {

InMemorySource::InMemorySource(ImageDataset dataset, std::string name)
    : dataset_(std::move(dataset)), name_(std::move(name)) {
  validate_dataset(dataset_, name_);
}

void InMemorySource::read(int64_t i, Image& out) const {
  if (i < 0 || i >= dataset_.n) {
    throw DataError(name_ + ": example " + std::to_string(i) + " is outside [0, " +
                    std::to_string(dataset_.n) + ")");
  }
  const size_t bytes = size_t(dataset_.height * dataset_.width * dataset_.channels);
  out.height = dataset_.height;
  out.width = dataset_.width;
  out.channels = dataset_.channels;
  out.pixels.resize(bytes);
  std::copy_n(dataset_.images.begin() + std::ptrdiff_t(size_t(i) * bytes), bytes,
              out.pixels.begin());
}

std::string InMemorySource::describe(int64_t i) const {
  return name_ + "#" + std::to_string(i);
}

}  // namespace vmoe::data
