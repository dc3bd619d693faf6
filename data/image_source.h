// A labelled image collection read one example at a time. The readers (IDX, CIFAR, image
// folders, packed HDF5 shards) implement it; the loader decodes and augments examples in
// worker threads, so read() must be safe to call concurrently.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_dataset.h"

namespace vmoe::data {

// One decoded image, raw pixels [height, width, channels] row-major, 0..255.
struct Image {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;
};

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual int32_t num_classes() const = 0;
  // Label of example i, without decoding it.
  virtual int32_t label(int64_t i) const = 0;
  // Decodes example i into `out` (reusing its buffer). Thread-safe. Throws DataError for a
  // corrupt or unreadable example; the loader skips it and reports describe(i) once.
  virtual void read(int64_t i, Image& out) const = 0;
  // Where example i comes from, for messages: a file path, or "file#index".
  virtual std::string describe(int64_t i) const = 0;
};

// An ImageDataset held in memory (IDX, CIFAR) as a source.
class InMemorySource final : public ImageSource {
 public:
  InMemorySource(ImageDataset dataset, std::string name);
  int64_t size() const override { return dataset_.n; }
  int32_t num_classes() const override { return dataset_.num_classes; }
  int32_t label(int64_t i) const override { return dataset_.labels[size_t(i)]; }
  void read(int64_t i, Image& out) const override;
  std::string describe(int64_t i) const override;
  const ImageDataset& dataset() const { return dataset_; }

 private:
  ImageDataset dataset_;
  std::string name_;
};

}  // namespace vmoe::data
