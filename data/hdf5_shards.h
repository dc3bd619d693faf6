// Packed HDF5 shards: one HDF5 file holding a whole split, decoded and of one image size.
// Layout: dataset `images` uint8 [N, H, W, C], dataset `labels` int32 [N], root attribute
// `num_classes` (int64). Written by `vmoe data pack`, read whole into memory.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "data/image_dataset.h"
#include "data/image_source.h"

namespace vmoe::data {

// Reads a shard into memory. Throws DataError naming the file for a missing file, missing or
// mis-shaped datasets, a non-uint8 `images`, a count mismatch or a label outside
// [0, num_classes).
ImageDataset load_hdf5_shard(const std::string& path);

// Called after each written image: (images written, total).
using ShardProgress = std::function<void(int64_t done, int64_t total)>;

// Reads every example of `source` (in order) and writes them as a shard to `path` (written under
// a temporary name, then renamed). height/width: the size every image must have; 0 = the first
// image's. All images must have that size and the first image's channels: the first that
// differs is an error naming it (describe(i)). A corrupt example is an error too.
void write_hdf5_shard(const std::string& path, const ImageSource& source, int64_t height,
                      int64_t width, const ShardProgress& progress = {});

}  // namespace vmoe::data
