// A task carved out of a dataset by class (config data.classes): only the examples of the listed
// classes, in their order, label classes[i] renumbered i. In memory (ImageDataset) and as a
// source wrapper (streamed image folders), with the same checks.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/image_dataset.h"
#include "data/image_source.h"

namespace vmoe::data {

// The kept examples: their indices among the n examples, in order, and their new labels.
struct ClassSelection {
  std::vector<int64_t> indices;
  std::vector<int32_t> labels;
};

// Throws DataError naming `what` for a negative or repeated id, an id >= num_classes (the
// dataset's class count), or when no example is kept.
ClassSelection select_classes(int64_t n, const std::function<int32_t(int64_t)>& label,
                              int32_t num_classes, const std::vector<int32_t>& classes,
                              const std::string& what);

// The kept examples of an in-memory dataset as a dataset of classes.size() classes.
ImageDataset keep_classes(const ImageDataset& dataset, const std::vector<int32_t>& classes,
                          const std::string& what);

// The kept examples of `base`, read through it; num_classes() is classes.size().
class ClassSubsetSource final : public ImageSource {
 public:
  ClassSubsetSource(std::shared_ptr<const ImageSource> base, const std::vector<int32_t>& classes,
                    const std::string& what);
  int64_t size() const override { return int64_t(kept_.indices.size()); }
  int32_t num_classes() const override { return num_classes_; }
  int32_t label(int64_t i) const override { return kept_.labels[size_t(i)]; }
  void read(int64_t i, Image& out) const override { base_->read(kept_.indices[size_t(i)], out); }
  std::string describe(int64_t i) const override {
    return base_->describe(kept_.indices[size_t(i)]);
  }

 private:
  std::shared_ptr<const ImageSource> base_;
  ClassSelection kept_;
  int32_t num_classes_;
};

}  // namespace vmoe::data
