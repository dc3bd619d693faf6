// HDF5 shard reading and writing through the HDF5 C API, with a small RAII owner for hid_t and
// one checking macro (data/ must not use parallel/'s HDF5 wrapper). HDF5 is built without
// thread safety: every call here holds one mutex.
#include "data/hdf5_shards.h"

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

#include "data/data_error.h"

namespace vmoe::data {
namespace {

std::mutex& shard_mutex() {
  static std::mutex mutex;
  return mutex;
}

// One line for the innermost entry of the HDF5 error stack; clears it.
std::string hdf5_message() {
  std::string message;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto* m = static_cast<std::string*>(data);
        *m = std::string(e->func_name ? e->func_name : "?") + "(): " + (e->desc ? e->desc : "");
        return 0;
      },
      &message);
  H5Eclear2(H5E_DEFAULT);
  for (char& c : message) {
    if (c == '\n') c = ' ';
  }
  return message;
}

template <typename T>
T check(T result, const char* call, const std::string& path) {
  if (result < 0) {
    throw DataError("HDF5 shard '" + path + "': " + call + " failed: " + hdf5_message());
  }
  return result;
}
// Checks an HDF5 call (negative = failure) made on the shard `path`.
#define VMOE_SHARD_H5(call, path) check((call), #call, (path))

// Owns one hid_t, closed with Close.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() {
    if (id_ >= 0) Close(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  // Closes now, reporting failure (a file's close flushes it).
  void close(const std::string& path) {
    const hid_t id = std::exchange(id_, H5I_INVALID_HID);
    VMOE_SHARD_H5(Close(id), path);
  }

 private:
  hid_t id_;
};
using File = Handle<H5Fclose>;
using Dataset = Handle<H5Dclose>;
using Space = Handle<H5Sclose>;
using Attr = Handle<H5Aclose>;
using Plist = Handle<H5Pclose>;
using Type = Handle<H5Tclose>;

// Turns off HDF5's printing of error stacks (failures become DataError).
void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::vector<hsize_t> dims_of(const Dataset& ds, const std::string& path) {
  Space space(VMOE_SHARD_H5(H5Dget_space(ds.get()), path));
  const int rank = VMOE_SHARD_H5(H5Sget_simple_extent_ndims(space.get()), path);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  VMOE_SHARD_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), path);
  return dims;
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

Dataset open_dataset(const File& file, const char* name, const std::string& path) {
  if (H5Lexists(file.get(), name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError("HDF5 shard '" + path + "' has no dataset '" + name + "'");
  }
  return Dataset(VMOE_SHARD_H5(H5Dopen2(file.get(), name, H5P_DEFAULT), path));
}

}  // namespace

ImageDataset load_hdf5_shard(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw DataError("HDF5 shard '" + path + "' does not exist or is not a regular file");
  }
  std::lock_guard<std::mutex> lock(shard_mutex());
  quiet_hdf5();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError("'" + path + "' is not an HDF5 file (expected a shard from `vmoe data pack`)");
  }
  File file(VMOE_SHARD_H5(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path));

  Dataset images = open_dataset(file, "images", path);
  const std::vector<hsize_t> idims = dims_of(images, path);
  if (idims.size() != 4 || idims[0] == 0 || idims[1] == 0 || idims[2] == 0 || idims[3] == 0) {
    throw DataError("HDF5 shard '" + path + "': dataset 'images' has shape " + dims_text(idims) +
                    ", expected [N, H, W, C] with every dim > 0");
  }
  {
    Type type(VMOE_SHARD_H5(H5Dget_type(images.get()), path));
    if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) != 1 ||
        H5Tget_sign(type.get()) != H5T_SGN_NONE) {
      throw DataError("HDF5 shard '" + path + "': dataset 'images' must be uint8");
    }
  }
  Dataset labels = open_dataset(file, "labels", path);
  const std::vector<hsize_t> ldims = dims_of(labels, path);
  if (ldims.size() != 1 || ldims[0] != idims[0]) {
    throw DataError("HDF5 shard '" + path + "': dataset 'labels' has shape " + dims_text(ldims) +
                    ", expected [" + std::to_string(idims[0]) + "] (one per image)");
  }
  {
    Type type(VMOE_SHARD_H5(H5Dget_type(labels.get()), path));
    if (H5Tget_class(type.get()) != H5T_INTEGER) {
      throw DataError("HDF5 shard '" + path + "': dataset 'labels' must hold integers");
    }
  }
  if (H5Aexists(file.get(), "num_classes") <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw DataError("HDF5 shard '" + path + "' has no root attribute 'num_classes'");
  }
  int64_t num_classes = 0;
  {
    Attr attr(VMOE_SHARD_H5(H5Aopen(file.get(), "num_classes", H5P_DEFAULT), path));
    VMOE_SHARD_H5(H5Aread(attr.get(), H5T_NATIVE_INT64, &num_classes), path);
  }
  if (num_classes <= 0 || num_classes > INT32_MAX) {
    throw DataError("HDF5 shard '" + path + "': attribute num_classes is " +
                    std::to_string(num_classes) + ", expected > 0");
  }

  ImageDataset ds;
  ds.n = int64_t(idims[0]);
  ds.height = int64_t(idims[1]);
  ds.width = int64_t(idims[2]);
  ds.channels = int64_t(idims[3]);
  ds.num_classes = int32_t(num_classes);
  ds.images.resize(size_t(ds.n * ds.height * ds.width * ds.channels));
  ds.labels.resize(size_t(ds.n));
  VMOE_SHARD_H5(
      H5Dread(images.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds.images.data()),
      path);
  VMOE_SHARD_H5(
      H5Dread(labels.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds.labels.data()),
      path);
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
  Image image;
  source.read(0, image);
  const int64_t h = height > 0 ? height : image.height;
  const int64_t w = width > 0 ? width : image.width;
  const int64_t c = image.channels;
  const int64_t image_bytes = h * w * c;
  // Chunks of whole images, about 1 MiB each.
  const int64_t per_chunk = std::clamp<int64_t>((int64_t(1) << 20) / image_bytes, 1, n);

  const std::string tmp = path + ".tmp";
  // Declared before the lock and the handles, so it runs after they are closed.
  struct RemoveUnlessDone {
    const std::string& file;
    bool done = false;
    ~RemoveUnlessDone() {
      std::error_code ignored;
      if (!done) std::filesystem::remove(file, ignored);
    }
  } cleanup{tmp};
  std::unique_lock<std::mutex> lock(shard_mutex());
  quiet_hdf5();
  File file(VMOE_SHARD_H5(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), tmp));
  const hsize_t idims[4] = {hsize_t(n), hsize_t(h), hsize_t(w), hsize_t(c)};
  const hsize_t chunk[4] = {hsize_t(per_chunk), hsize_t(h), hsize_t(w), hsize_t(c)};
  Space ispace(VMOE_SHARD_H5(H5Screate_simple(4, idims, nullptr), tmp));
  Plist dcpl(VMOE_SHARD_H5(H5Pcreate(H5P_DATASET_CREATE), tmp));
  VMOE_SHARD_H5(H5Pset_chunk(dcpl.get(), 4, chunk), tmp);
  Dataset images(VMOE_SHARD_H5(H5Dcreate2(file.get(), "images", H5T_STD_U8LE, ispace.get(),
                                          H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                               tmp));
  lock.unlock();

  std::vector<int32_t> labels(static_cast<size_t>(n));
  std::vector<uint8_t> buffer(size_t(per_chunk * image_bytes));
  try {
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
      lock.lock();
      const hsize_t start[4] = {hsize_t(first), 0, 0, 0};
      const hsize_t extent[4] = {hsize_t(count), hsize_t(h), hsize_t(w), hsize_t(c)};
      Space file_space(VMOE_SHARD_H5(H5Dget_space(images.get()), tmp));
      VMOE_SHARD_H5(
          H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr),
          tmp);
      Space mem_space(VMOE_SHARD_H5(H5Screate_simple(4, extent, nullptr), tmp));
      VMOE_SHARD_H5(H5Dwrite(images.get(), H5T_NATIVE_UINT8, mem_space.get(), file_space.get(),
                             H5P_DEFAULT, buffer.data()),
                    tmp);
      lock.unlock();
      if (progress) progress(first + count, n);
    }
  } catch (...) {
    if (!lock.owns_lock()) lock.lock();  // the handles close under the lock
    throw;
  }

  lock.lock();
  const hsize_t ldims[1] = {hsize_t(n)};
  Space lspace(VMOE_SHARD_H5(H5Screate_simple(1, ldims, nullptr), tmp));
  Dataset label_ds(VMOE_SHARD_H5(H5Dcreate2(file.get(), "labels", H5T_STD_I32LE, lspace.get(),
                                            H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                                 tmp));
  VMOE_SHARD_H5(
      H5Dwrite(label_ds.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels.data()),
      tmp);
  Space scalar(VMOE_SHARD_H5(H5Screate(H5S_SCALAR), tmp));
  Attr attr(VMOE_SHARD_H5(
      H5Acreate2(file.get(), "num_classes", H5T_STD_I64LE, scalar.get(), H5P_DEFAULT, H5P_DEFAULT),
      tmp));
  const int64_t num_classes = source.num_classes();
  VMOE_SHARD_H5(H5Awrite(attr.get(), H5T_NATIVE_INT64, &num_classes), tmp);
  attr.close(tmp);
  label_ds.close(tmp);
  images.close(tmp);
  file.close(tmp);
  lock.unlock();
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    throw DataError("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
  cleanup.done = true;
}

}  // namespace vmoe::data
