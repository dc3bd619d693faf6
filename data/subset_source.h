// Some examples of another ImageSource, in a given order, as a source of their own: an example
// limit on a streamed dataset, the drawn examples of a few-shot set.
#pragma once
#include <memory>
#include <vector>

#include "data/image_source.h"

namespace vmoe::data {

class SubsetSource final : public ImageSource {
 public:
  // Throws DataError if an index is outside the base source.
  SubsetSource(std::shared_ptr<const ImageSource> base, std::vector<int64_t> indices);
  int64_t size() const override { return int64_t(indices_.size()); }
  int32_t num_classes() const override { return base_->num_classes(); }
  int32_t label(int64_t i) const override { return base_->label(indices_[size_t(i)]); }
  void read(int64_t i, Image& out) const override { base_->read(indices_[size_t(i)], out); }
  std::string describe(int64_t i) const override { return base_->describe(indices_[size_t(i)]); }

 private:
  std::shared_ptr<const ImageSource> base_;
  std::vector<int64_t> indices_;
};

// `count` indices spread evenly over [0, n) (all of them when count >= n): a limit that keeps
// every part of a class-ordered folder.
std::vector<int64_t> evenly_spaced(int64_t n, int64_t count);

}  // namespace vmoe::data
