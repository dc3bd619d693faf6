// HDF5 shard reading and writing on the one HDF5 library (hdf5/): its handles, check macro and
// process-wide lock; reads through Hdf5File, which checks every declared type, shape and size
// against the file before allocating.
#include "data/hdf5_shards.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

#include "data/checked_size.h"
#include "data/data_error.h"
#include "hdf5/hdf5_file.h"
#include "hdf5/hdf5_handle.h"

namespace vmoe::data {
namespace {

// The labels as int32, whichever integer type the file stores them in (values beyond int32 are
// clamped to it, and then refused by validate_dataset).
std::vector<int32_t> labels_of(const H5Array& a) {
  std::vector<int32_t> out(size_t(a.numel()));
  auto convert = [&]<typename T>(T) {
    for (size_t i = 0; i < out.size(); ++i) {
      T v;
      std::memcpy(&v, a.bytes.data() + i * sizeof(T), sizeof(T));
      out[i] = int32_t(std::clamp<int64_t>(int64_t(v), INT32_MIN, INT32_MAX));
    }
  };
  switch (a.type) {
    case H5Type::i32:
      convert(int32_t{});
      break;
    case H5Type::i64:
      convert(int64_t{});
      break;
    case H5Type::u8:
      convert(uint8_t{});
      break;
    default:
      throw DataError(std::string("labels of type ") + h5_type_name(a.type));
  }
  return out;
}

}  // namespace

ImageDataset load_hdf5_shard(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw DataError("HDF5 shard '" + path + "' does not exist or is not a regular file");
  }
  {
    hdf5_init();
    Hdf5Lock lock;
    if (H5Fis_hdf5(path.c_str()) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      throw DataError("'" + path +
                      "' is not an HDF5 file (expected a shard from `vmoe data pack`)");
    }
  }
  ImageDataset ds;
  try {
    const Hdf5File file(path, Hdf5File::Mode::Read);
    auto require = [&](const char* name) {
      if (!file.has(name)) {
        throw DataError("HDF5 shard '" + path + "' has no dataset '" + name + "'");
      }
    };
    require("images");
    // Shapes and types first (nothing is allocated before every declared size is checked).
    const H5Expect image_expect{{H5Type::u8}, std::vector<int64_t>{-1, -1, -1, -1}, "[N, H, W, C]"};
    const H5DatasetInfo images = file.info("images", image_expect);
    for (int64_t d : images.shape) {
      if (d == 0) {
        throw DataError("HDF5 shard '" + path + "': dataset 'images' has shape " +
                        h5_shape_str(images.shape) + ", expected [N, H, W, C] with every dim > 0");
      }
    }
    const int64_t n = images.shape[0];
    require("labels");
    const H5Expect label_expect{
        {H5Type::i32, H5Type::i64, H5Type::u8}, std::vector<int64_t>{n}, {}};
    file.info("labels", label_expect);
    if (!file.has_attr("num_classes")) {
      throw DataError("HDF5 shard '" + path + "' has no root attribute 'num_classes'");
    }
    const int64_t num_classes = file.get_attr_int("num_classes");
    if (num_classes <= 0 || num_classes > INT32_MAX) {
      throw DataError("HDF5 shard '" + path + "': attribute 'num_classes' is " +
                      std::to_string(num_classes) + ", expected 1 to " + std::to_string(INT32_MAX));
    }
    ds.n = n;
    ds.height = images.shape[1];
    ds.width = images.shape[2];
    ds.channels = images.shape[3];
    ds.num_classes = int32_t(num_classes);
    ds.labels = labels_of(file.read("labels", label_expect));
    ds.images = std::move(file.read("images", image_expect).bytes);
  } catch (const Hdf5Error& e) {
    throw DataError(std::string("bad HDF5 shard: ") + e.what());
  }
  validate_dataset(ds, "HDF5 shard '" + path + "'");
  return ds;
}

void write_hdf5_shard(const std::string& path, const ImageSource& source, int64_t height,
                      int64_t width, const ShardProgress& progress) {
  const int64_t n = source.size();
  if (n <= 0) throw DataError("cannot pack '" + path + "': the source holds no examples");
  if (height < 0 || width < 0) {
    throw DataError("cannot pack '" + path + "': image size " + std::to_string(height) + "x" +
                    std::to_string(width) + " must be >= 0 (0 = the first image's)");
  }
  const std::string where = "cannot pack '" + path + "'";
  check_at_most(height, kMaxImageSide, where, "the image height");
  check_at_most(width, kMaxImageSide, where, "the image width");
  Image image;
  source.read(0, image);
  const int64_t h = height > 0 ? height : image.height;
  const int64_t w = width > 0 ? width : image.width;
  const int64_t c = image.channels;
  check_at_most(checked_mul(h, w, "image pixels"), kMaxImagePixels, where,
                "the pixels per image (" + std::to_string(h) + "x" + std::to_string(w) + ")");
  const int64_t image_bytes = checked_product({h, w, c}, "image bytes");
  // Chunks of whole images, about 1 MiB each.
  const int64_t per_chunk = std::clamp<int64_t>((int64_t(1) << 20) / image_bytes, 1, n);

  const std::string tmp = path + ".tmp";
  // Declared before the handles, so it runs after they are closed.
  struct RemoveUnlessDone {
    const std::string& file;
    bool done = false;
    ~RemoveUnlessDone() {
      std::error_code ignored;
      if (!done) std::filesystem::remove(file, ignored);
    }
  } cleanup{tmp};
  try {
    hdf5_init();
    // HDF5 calls hold the one HDF5 lock; it is released while images are decoded. Handles
    // take it themselves when they close.
    std::unique_lock<std::recursive_mutex> lock(hdf5_mutex());
    H5FileId file{VMOE_H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
    const hsize_t idims[4] = {hsize_t(n), hsize_t(h), hsize_t(w), hsize_t(c)};
    const hsize_t chunk[4] = {hsize_t(per_chunk), hsize_t(h), hsize_t(w), hsize_t(c)};
    H5SpaceId ispace{VMOE_H5_CHECK(H5Screate_simple(4, idims, nullptr))};
    H5PlistId dcpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
    VMOE_H5_CHECK(H5Pset_chunk(dcpl.get(), 4, chunk));
    H5DatasetId images{
        VMOE_H5_CHECK(H5Dcreate2(file.get(), "images", h5_file_type(H5Type::u8), ispace.get(),
                                 H5P_DEFAULT, dcpl.get(), H5P_DEFAULT))};
    lock.unlock();

    std::vector<int32_t> labels(static_cast<size_t>(n));
    std::vector<uint8_t> buffer(size_t(per_chunk * image_bytes));
    for (int64_t first = 0; first < n; first += per_chunk) {
      const int64_t count = std::min(per_chunk, n - first);
      for (int64_t k = 0; k < count; ++k) {
        const int64_t i = first + k;
        if (i > 0) source.read(i, image);  // image 0 was read above
        if (image.height != h || image.width != w || image.channels != c) {
          throw DataError("cannot pack '" + path + "': image " + source.describe(i) + " is " +
                          std::to_string(image.height) + "x" + std::to_string(image.width) + "x" +
                          std::to_string(image.channels) + " but the shard holds " +
                          std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c) +
                          " images (resize them first)");
        }
        std::copy(image.pixels.begin(), image.pixels.end(),
                  buffer.begin() + std::ptrdiff_t(k * image_bytes));
        labels[size_t(i)] = source.label(i);
      }
      {
        Hdf5Lock write_lock;
        const hsize_t start[4] = {hsize_t(first), 0, 0, 0};
        const hsize_t extent[4] = {hsize_t(count), hsize_t(h), hsize_t(w), hsize_t(c)};
        H5SpaceId file_space{VMOE_H5_CHECK(H5Dget_space(images.get()))};
        VMOE_H5_CHECK(
            H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr));
        H5SpaceId mem_space{VMOE_H5_CHECK(H5Screate_simple(4, extent, nullptr))};
        VMOE_H5_CHECK(H5Dwrite(images.get(), h5_memory_type(H5Type::u8), mem_space.get(),
                               file_space.get(), H5P_DEFAULT, buffer.data()));
      }
      if (progress) progress(first + count, n);
    }

    lock.lock();
    const hsize_t ldims[1] = {hsize_t(n)};
    H5SpaceId lspace{VMOE_H5_CHECK(H5Screate_simple(1, ldims, nullptr))};
    H5DatasetId label_ds{
        VMOE_H5_CHECK(H5Dcreate2(file.get(), "labels", h5_file_type(H5Type::i32), lspace.get(),
                                 H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
    VMOE_H5_CHECK(H5Dwrite(label_ds.get(), h5_memory_type(H5Type::i32), H5S_ALL, H5S_ALL,
                           H5P_DEFAULT, labels.data()));
    H5SpaceId scalar{VMOE_H5_CHECK(H5Screate(H5S_SCALAR))};
    H5AttrId attr{VMOE_H5_CHECK(H5Acreate2(file.get(), "num_classes", h5_file_type(H5Type::i64),
                                           scalar.get(), H5P_DEFAULT, H5P_DEFAULT))};
    const int64_t num_classes = source.num_classes();
    VMOE_H5_CHECK(H5Awrite(attr.get(), h5_memory_type(H5Type::i64), &num_classes));
    attr.close();
    label_ds.close();
    images.close();
    file.close();
  } catch (const Hdf5Error& e) {
    throw DataError("cannot pack '" + path + "': " + e.what());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    throw DataError("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
  cleanup.done = true;
}

}  // namespace vmoe::data
