// Class subsets of a dataset.
#include "data/class_subset.h"

#include <algorithm>
#include <utility>

#include "data/data_error.h"

namespace vmoe::data {

ClassSelection select_classes(int64_t n, const std::function<int32_t(int64_t)>& label,
                              int32_t num_classes, const std::vector<int32_t>& classes,
                              const std::string& what) {
  // new_label[c]: the position of class c in the list, -1 when it is dropped.
  std::vector<int32_t> new_label(size_t(std::max(num_classes, 0)), -1);
  for (size_t i = 0; i < classes.size(); ++i) {
    const int32_t c = classes[i];
    if (c < 0 || c >= num_classes) {
      throw DataError("data.classes names class " + std::to_string(c) + " but " + what +
                      " has classes 0.." + std::to_string(num_classes - 1));
    }
    if (new_label[size_t(c)] >= 0)
      throw DataError("data.classes names class " + std::to_string(c) + " twice");
    new_label[size_t(c)] = int32_t(i);
  }
  ClassSelection out;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t l = label(i);
    // Labels outside the class count are the dataset readers' error, reported there.
    if (l < 0 || l >= num_classes || new_label[size_t(l)] < 0) continue;
    out.indices.push_back(i);
    out.labels.push_back(new_label[size_t(l)]);
  }
  if (out.indices.empty()) throw DataError(what + " has no example of the classes in data.classes");
  return out;
}

ImageDataset keep_classes(const ImageDataset& d, const std::vector<int32_t>& classes,
                          const std::string& what) {
  const ClassSelection kept = select_classes(
      d.n, [&](int64_t i) { return d.labels[size_t(i)]; }, d.num_classes, classes, what);
  ImageDataset out;
  out.n = int64_t(kept.indices.size());
  out.height = d.height;
  out.width = d.width;
  out.channels = d.channels;
  out.num_classes = int32_t(classes.size());
  out.labels = kept.labels;
  const size_t per = size_t(d.height * d.width * d.channels);
  out.images.resize(size_t(out.n) * per);
  for (size_t k = 0; k < kept.indices.size(); ++k) {
    const auto first = d.images.begin() + std::ptrdiff_t(size_t(kept.indices[k]) * per);
    std::copy(first, first + std::ptrdiff_t(per), out.images.begin() + std::ptrdiff_t(k * per));
  }
  return out;
}

ClassSubsetSource::ClassSubsetSource(std::shared_ptr<const ImageSource> base,
                                     const std::vector<int32_t>& classes, const std::string& what)
    : base_(std::move(base)),
      kept_(select_classes(
          base_->size(), [this](int64_t i) { return base_->label(i); }, base_->num_classes(),
          classes, what)),
      num_classes_(int32_t(classes.size())) {}

}  // namespace vmoe::data
