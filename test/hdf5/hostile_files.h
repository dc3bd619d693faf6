// Building blocks of hostile HDF5 files for tests, made with the hdf5/ library itself: datasets
// that declare a shape without storing its data, array-valued attributes, attributes of another
// kind than a reader expects, data kept in external files.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hdf5/hdf5_handle.h"

namespace vmoe::testing {

// Opens `path` read-write, creating it if missing.
inline H5FileId open_for_hostile_edit(const std::string& path) {
  hdf5_init();
  Hdf5Lock lock;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return H5FileId{VMOE_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
  }
  return H5FileId{VMOE_H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
}

// Creates dataset `name` (groups on the way too) of HDF5 type `type` and shape `dims`, chunked
// one element per chunk, and writes nothing: the file declares the shape but stores
// no data for it. An existing object of that name is replaced.
inline void declare_dataset(const std::string& path, const std::string& name, hid_t type,
                            const std::vector<hsize_t>& dims) {
  H5FileId file = open_for_hostile_edit(path);
  Hdf5Lock lock;
  if (H5Lexists(file.get(), name.c_str(), H5P_DEFAULT) > 0) {
    VMOE_H5_CHECK(H5Ldelete(file.get(), name.c_str(), H5P_DEFAULT));
  }
  H5Eclear2(H5E_DEFAULT);
  H5SpaceId space{VMOE_H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr))};
  H5PlistId dcpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  const std::vector<hsize_t> chunk(dims.size(), 1);
  VMOE_H5_CHECK(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()));
  H5PlistId lcpl{VMOE_H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  VMOE_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1));
  H5DatasetId ds{VMOE_H5_CHECK(H5Dcreate2(file.get(), name.c_str(), type, space.get(), lcpl.get(),
                                          dcpl.get(), H5P_DEFAULT))};
  ds.close();
  file.close();
}

// Sets attribute `attr` of object `object` ("." = the root group) to an int64 array of shape
// [values.size()], replacing any previous attribute of that name.
inline void set_int_array_attribute(const std::string& path, const std::string& object,
                                    const std::string& attr, const std::vector<int64_t>& values) {
  H5FileId file = open_for_hostile_edit(path);
  Hdf5Lock lock;
  H5ObjectId owner{VMOE_H5_CHECK(H5Oopen(file.get(), object.c_str(), H5P_DEFAULT))};
  if (VMOE_H5_CHECK(H5Aexists(owner.get(), attr.c_str())) > 0) {
    VMOE_H5_CHECK(H5Adelete(owner.get(), attr.c_str()));
  }
  const hsize_t n = values.size();
  H5SpaceId space{VMOE_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  H5AttrId a{VMOE_H5_CHECK(
      H5Acreate2(owner.get(), attr.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT))};
  VMOE_H5_CHECK(H5Awrite(a.get(), H5T_NATIVE_INT64, values.data()));
  a.close();
  owner.close();
  file.close();
}

// Creates dataset `name` of int32 [n] whose data lives in the raw file `external` (not in the
// HDF5 file): a reader that follows it reads whatever file the HDF5 file names.
inline void declare_external_dataset(const std::string& path, const std::string& name,
                                     const std::string& external, hsize_t n) {
  H5FileId file = open_for_hostile_edit(path);
  Hdf5Lock lock;
  H5SpaceId space{VMOE_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  H5PlistId dcpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  VMOE_H5_CHECK(H5Pset_external(dcpl.get(), external.c_str(), 0, n * 4));
  H5DatasetId ds{VMOE_H5_CHECK(H5Dcreate2(file.get(), name.c_str(), H5T_STD_I32LE, space.get(),
                                          H5P_DEFAULT, dcpl.get(), H5P_DEFAULT))};
  ds.close();
  file.close();
}

}  // namespace vmoe::testing
