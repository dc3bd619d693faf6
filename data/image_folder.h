// An image-folder dataset (ImageNet style): root/<class>/<file> with one subfolder per class.
// Classes are the subfolders sorted by name (labels 0, 1, ...); each class's *.jpg, *.jpeg and
// *.png files (case-insensitive) sorted by name. Files are decoded in read(), not up front.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_source.h"

namespace vmoe::data {

// The class names of the image folder at `root` (its subfolders, sorted by name) without
// listing their images; labels are positions in this list. Throws DataError as the source does
// for a missing root or a root without class folders.
std::vector<std::string> image_folder_classes(const std::string& root);

// Throws DataError unless the image folders `first` and `second` (train and test) have the same
// class names in the same order; the message names both folders and the first difference.
void check_same_classes(const std::string& first, const std::string& second);

class ImageFolderSource final : public ImageSource {
 public:
  // Lists the folder; throws DataError for a missing root, a root with no class folders, or a
  // class folder holding no images. channels: 1 (grey) or 3 (RGB); every image is converted.
  ImageFolderSource(const std::string& root, int64_t channels);

  int64_t size() const override { return int64_t(files_.size()); }
  int32_t num_classes() const override { return int32_t(class_names_.size()); }
  int32_t label(int64_t i) const override;
  // Decodes the JPEG or PNG file of example i; throws DataError naming the path if it is
  // corrupt or unreadable. Thread-safe.
  void read(int64_t i, Image& out) const override;
  std::string describe(int64_t i) const override;

  const std::vector<std::string>& class_names() const { return class_names_; }
  int64_t channels() const { return channels_; }

 private:
  void check_index(int64_t i) const;

  std::string root_;
  int64_t channels_;
  std::vector<std::string> class_names_;
  std::vector<std::string> files_;  // full paths, grouped by class
  std::vector<int32_t> labels_;     // [files_.size()]
};

}  // namespace vmoe::data
