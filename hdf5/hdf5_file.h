// A plain (single-process) HDF5 file of raw typed arrays and attributes: the HDF5 wrapper for
// ordinary files (weights, golden data, shards, tools). Arrays are raw bytes plus a type and a
// shape. Every read is checked first (hdf5_checks.h): nothing a file declares is allocated
// before its type, shape and stored bytes are. The parallel checkpoint builds on hdf5_handle.h.
#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hdf5/hdf5_checks.h"
#include "hdf5/hdf5_types.h"

namespace vmoe {

// An array read back from a file: row-major native-endian bytes, shape {} for a scalar.
struct H5Array {
  H5Type type = H5Type::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel() * h5_type_size(type) bytes

  int64_t numel() const;
};

// One open HDF5 file, always with the serial (sec2) driver: it works in programs that never
// call MPI_Init. Names are '/'-separated paths ("encoder/block_00/mlp/fc1/kernel"); a leading
// '/' is ignored. Every failure throws Hdf5Error (a std::runtime_error) naming the file.
// Safe to use from several threads: all HDF5 calls are serialised by one process-wide lock.
class Hdf5File {
 public:
  enum class Mode {
    Read,    // existing file, read-only
    Create,  // new file; an existing one is truncated
    Append,  // existing file opened read-write, or a new one created
  };

  Hdf5File(const std::string& path, Mode mode);
  ~Hdf5File();
  Hdf5File(Hdf5File&& other) noexcept;
  Hdf5File& operator=(Hdf5File&& other) noexcept;
  Hdf5File(const Hdf5File&) = delete;
  Hdf5File& operator=(const Hdf5File&) = delete;

  const std::string& path() const { return path_; }
  Mode mode() const { return mode_; }

  // Stores `shape` elements of type `t` read from `data` (row-major) as dataset `name`,
  // creating the groups on its path. Non-empty arrays are chunked and protected by a Fletcher32
  // checksum per chunk, verified on every read; scalars (shape {}) are stored contiguously.
  // An existing dataset of the same type and shape is overwritten in place; one of another
  // type or shape is replaced.
  void write(const std::string& name, H5Type t, const std::vector<int64_t>& shape,
             const void* data);

  // The whole dataset `name`. Throws Hdf5Error naming the file, the dataset and what was
  // expected if it is missing, of an unsupported type, not as `expect` says, larger than the
  // file holds or than kH5MaxDatasetBytes (all checked before allocating), or if a checksum
  // does not match.
  H5Array read(const std::string& name, const H5Expect& expect = {}) const;

  // Rows [first, first + count) of dataset `name` along its leading axis (a hyperslab: only
  // those bytes are read), e.g. one rank's experts of an [E, ...] tensor; the array's shape is
  // the dataset's with `count` leading. Throws like read(), and for a range outside the axis.
  H5Array read_rows(const std::string& name, int64_t first, int64_t count,
                    const H5Expect& expect = {}) const;

  // Element type and shape of dataset `name`, without reading its data. Throws like read().
  H5DatasetInfo info(const std::string& name, const H5Expect& expect = {}) const;

  // True if `name` exists and is a dataset.
  bool has(const std::string& name) const;

  // Paths of all datasets in the file, sorted, without a leading '/'.
  std::vector<std::string> list() const;

  // Attributes. A plain key ("step") is an attribute of the root group; a key with '/' names
  // an attribute of a group or dataset: "case_token/image_size" is attribute "image_size" of
  // group "case_token" (created by set_attr if missing). Setting replaces any previous value.
  // Strings are stored as variable-length UTF-8 (as h5py does), integers as int64, reals as
  // float64.
  void set_attr(const std::string& key, const std::string& value);
  void set_attr(const std::string& key, const char* value) { set_attr(key, std::string(value)); }
  void set_attr(const std::string& key, double value);
  template <std::integral T>
  void set_attr(const std::string& key, T value) {
    set_attr_int(key, static_cast<int64_t>(value));
  }

  // Getters throw if the attribute is missing, of another kind or not a single value (checked
  // before reading); get_attr_double also accepts an integer attribute.
  std::string get_attr_string(const std::string& key) const;
  int64_t get_attr_int(const std::string& key) const;
  double get_attr_double(const std::string& key) const;
  bool has_attr(const std::string& key) const;

  // Writes everything buffered so far to the disk.
  void flush();

  // Closes the file now, reporting any failure (the destructor closes silently). Any later
  // call other than path() and mode() throws.
  void close();

 private:
  struct Impl;

  void set_attr_int(const std::string& key, int64_t value);
  // The open file; throws if it was closed or moved from.
  Impl& impl() const;
  // Throws unless the file was opened for writing.
  void require_writable(const std::string& what) const;

  std::string path_;
  Mode mode_ = Mode::Read;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmoe
