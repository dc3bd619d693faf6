// Structure-aware input for the HDF5 fuzz targets: the fuzz input is a list of edits applied,
// through the HDF5 library itself, to a copy of a valid template file written by the project's
// own writer. Every file a reader sees is therefore well-formed HDF5 holding hostile content:
// datasets replaced by others of any element type, rank, size (declared sizes up to 2^62 with no
// data stored), layout and filter; attributes of any type, shape and value (arrays, empty,
// variable or fixed strings, huge strings); objects deleted, turned into groups, hard-linked
// into cycles, soft- or external-linked to nowhere. That is the input our code is responsible
// for. Byte-level damage of the file itself mostly exercises the parser inside libhdf5, which
// has bugs of its own (docs/hardening.md): the *_bytes targets keep that mode outside CI.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "test/fuzz/fuzz_common.h"

namespace vmoe::fuzz {

namespace h5_edits_detail {

// hid_t closed on scope exit (failed calls return negative ids, which are not closed).
struct Owned {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Owned() {
    if (id >= 0) close(id);
  }
};

herr_t collect(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

// Every link path in the file (datasets and groups), and "" for the root group.
std::vector<std::string> object_paths(hid_t file) {
  std::vector<std::string> paths{""};
  H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, collect, &paths);
  return paths;
}

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

std::vector<std::string> attribute_names(hid_t object) {
  std::vector<std::string> names;
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attr, &names);
  return names;
}

// An existing path, or (less often) a new name near one: "<existing>/<word>" or a word.
std::string pick_path(FuzzedDataProvider& in, const std::vector<std::string>& paths) {
  static const char* const kWords[] = {"images", "labels", "params", "optimizer", "kernel",
                                       "bias",   "adam_m", "adam_v", "x",         "."};
  const std::string existing = paths[in.ConsumeIntegralInRange<size_t>(0, paths.size() - 1)];
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0:
      return (existing.empty() ? "" : existing + "/") + kWords[in.ConsumeIntegralInRange(0, 9)];
    case 1:
      return in.ConsumeRandomLengthString(24);
    default:
      return existing.empty() ? std::string(kWords[in.ConsumeIntegralInRange(0, 9)]) : existing;
  }
}

// An element type: the ones the project writes, and others it must refuse cleanly.
hid_t pick_type(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0:
      return H5Tcopy(H5T_IEEE_F32LE);
    case 1:
      return H5Tcopy(H5T_IEEE_F64LE);
    case 2:
      return H5Tcopy(H5T_STD_I32LE);
    case 3:
      return H5Tcopy(H5T_STD_I64LE);
    case 4:
      return H5Tcopy(H5T_STD_U8LE);
    case 5:
      return H5Tcopy(H5T_STD_U16LE);  // bf16's storage (with or without its dtype attribute)
    case 6:
      return H5Tcopy(H5T_IEEE_F32BE);
    case 7:
      return H5Tcopy(H5T_STD_I8LE);
    case 8:
      return H5Tcopy(H5T_STD_U64LE);
    case 9: {
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      return t;
    }
    case 10: {
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, in.ConsumeIntegralInRange<size_t>(1, 64));
      return t;
    }
    case 11: {
      hid_t t = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(t, "a", 0, H5T_STD_I32LE);
      H5Tinsert(t, "b", 4, H5T_IEEE_F32LE);
      return t;
    }
    case 12: {
      const hsize_t dims[1] = {in.ConsumeIntegralInRange<hsize_t>(1, 4)};
      return H5Tarray_create2(H5T_IEEE_F32LE, 1, dims);
    }
    case 13:
      return H5Tcreate(H5T_OPAQUE, in.ConsumeIntegralInRange<size_t>(1, 16));
    case 14: {
      hid_t t = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_precision(t, 16);  // a 16-bit float of an unusual layout
      return t;
    }
    default:
      return H5Tcopy(H5T_STD_I64BE);
  }
}

// A dimension: mostly small, sometimes empty or far beyond what any file could hold.
hsize_t pick_dim(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 0:
      return 0;
    case 1:
      return hsize_t(1) << in.ConsumeIntegralInRange(20, 62);
    case 2:
      return in.ConsumeIntegralInRange<hsize_t>(9, 300);
    default:
      return in.ConsumeIntegralInRange<hsize_t>(1, 8);
  }
}

// A dataspace: scalar, null, or simple of rank 0-5 (sometimes with unlimited maximum sizes).
hid_t pick_space(FuzzedDataProvider& in, std::vector<hsize_t>& dims) {
  const int kind = in.ConsumeIntegralInRange(0, 9);
  if (kind == 0) return H5Screate(H5S_SCALAR);
  if (kind == 1) return H5Screate(H5S_NULL);
  dims.resize(in.ConsumeIntegralInRange<size_t>(1, 5));
  for (hsize_t& d : dims)
    d = pick_dim(in);
  if (kind == 2) {
    std::vector<hsize_t> max(dims.size(), H5S_UNLIMITED);
    return H5Screate_simple(int(dims.size()), dims.data(), max.data());
  }
  return H5Screate_simple(int(dims.size()), dims.data(), nullptr);
}

// Bytes of `count` elements of `type` from the input (zeros past its end); for variable-length
// strings, pointers to short strings taken from the input.
struct Payload {
  std::vector<uint8_t> bytes;
  std::vector<std::string> strings;
  std::vector<const char*> pointers;
  const void* data() const {
    return pointers.empty() ? static_cast<const void*>(bytes.data()) : pointers.data();
  }
};

Payload make_payload(FuzzedDataProvider& in, hid_t type, size_t count) {
  Payload p;
  if (H5Tis_variable_str(type) > 0) {
    for (size_t i = 0; i < count; ++i)
      p.strings.push_back(in.ConsumeRandomLengthString(in.ConsumeBool() ? 64 : 4096));
    for (const std::string& s : p.strings)
      p.pointers.push_back(s.c_str());
    return p;
  }
  p.bytes = in.ConsumeBytes<uint8_t>(count * H5Tget_size(type));
  p.bytes.resize(count * H5Tget_size(type));
  return p;
}

// The number of elements of `dims` if it is at most `limit`, else limit + 1.
hsize_t bounded_count(const std::vector<hsize_t>& dims, hsize_t limit) {
  hsize_t count = 1;
  for (hsize_t d : dims) {
    if (d == 0) return 0;
    if (count > limit / d) return limit + 1;
    count *= d;
  }
  return count;
}

// Deletes the link `path` (and whatever it was) if there is one.
void remove_link(hid_t file, const std::string& path) {
  if (!path.empty() && H5Lexists(file, path.c_str(), H5P_DEFAULT) > 0) {
    H5Ldelete(file, path.c_str(), H5P_DEFAULT);
  }
}

// Replaces `path` with a new dataset of any type, shape and layout; data from the input
// (at most 64 KiB of it, elements past that are left unwritten: stored as fill or not at all).
void replace_dataset(hid_t file, FuzzedDataProvider& in, const std::string& path) {
  remove_link(file, path);
  Owned type{pick_type(in), H5Tclose};
  std::vector<hsize_t> dims;
  Owned space{pick_space(in, dims), H5Sclose};
  Owned lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Owned dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  if (!dims.empty() && in.ConsumeBool()) {
    std::vector<hsize_t> chunk(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
      chunk[i] = std::clamp<hsize_t>(dims[i], 1, 16);
    H5Pset_chunk(dcpl.id, int(chunk.size()), chunk.data());
    if (in.ConsumeBool()) H5Pset_fletcher32(dcpl.id);
    if (in.ConsumeBool()) H5Pset_deflate(dcpl.id, 1);
    if (in.ConsumeBool()) H5Pset_shuffle(dcpl.id);
  }
  Owned ds{H5Dcreate2(file, path.c_str(), type.id, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
           H5Dclose};
  if (ds.id < 0) return;
  const hsize_t count = bounded_count(dims, hsize_t(1) << 16);
  if (H5Sget_simple_extent_type(space.id) == H5S_NULL || count == 0) return;
  if (count * H5Tget_size(type.id) > (hsize_t(1) << 16) || !in.ConsumeBool()) return;
  const Payload p = make_payload(in, type.id, size_t(count));
  H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data());
}

// Overwrites every element of the existing dataset `path` with input bytes, keeping its type,
// shape and filters (so its checksums stay valid): NaNs, huge values, out-of-range labels.
void rewrite_values(hid_t file, FuzzedDataProvider& in, const std::string& path) {
  Owned ds{H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose};
  if (ds.id < 0) return;
  Owned type{H5Dget_type(ds.id), H5Tclose};
  Owned space{H5Dget_space(ds.id), H5Sclose};
  const hssize_t count = H5Sget_simple_extent_npoints(space.id);
  if (count <= 0 || H5Tis_variable_str(type.id) > 0 ||
      hsize_t(count) * H5Tget_size(type.id) > (hsize_t(1) << 20)) {
    return;
  }
  const Payload p = make_payload(in, type.id, size_t(count));
  H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data());
}

// Sets attribute `name` of the object at `path` to any type, shape and value.
void set_attribute(hid_t file, FuzzedDataProvider& in, const std::string& path,
                   const std::string& name) {
  Owned object{H5Oopen(file, path.empty() ? "/" : path.c_str(), H5P_DEFAULT), H5Oclose};
  if (object.id < 0 || name.empty()) return;
  if (H5Aexists(object.id, name.c_str()) > 0) H5Adelete(object.id, name.c_str());
  Owned type{pick_type(in), H5Tclose};
  std::vector<hsize_t> dims;
  Owned space{pick_space(in, dims), H5Sclose};
  const hsize_t count = bounded_count(dims, 64);
  if (count > 64) return;  // attributes live in the object header: keep them small
  Owned attr{H5Acreate2(object.id, name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT),
             H5Aclose};
  if (attr.id < 0 || H5Sget_simple_extent_type(space.id) == H5S_NULL) return;
  const Payload p = make_payload(in, type.id, size_t(count));
  H5Awrite(attr.id, type.id, p.data());
}

}  // namespace h5_edits_detail

// Copies `template_path` to `name` in scratch_dir(), applies the edits `data` encodes (at most
// 24) and returns the edited file's path. Edits the library refuses are skipped.
inline std::string edited_h5_file(const std::string& template_path, const std::string& name,
                                  const uint8_t* data, size_t size) {
  using namespace h5_edits_detail;
  const std::filesystem::path path = scratch_dir() / name;
  std::filesystem::copy_file(template_path, path,
                             std::filesystem::copy_options::overwrite_existing);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Owned file{H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) finding("template", "the template file does not open");
  FuzzedDataProvider in(data, size);
  for (int edit = 0; edit < 24 && in.remaining_bytes() > 0; ++edit) {
    const std::vector<std::string> paths = object_paths(file.id);
    const std::string target = pick_path(in, paths);
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
      case 1:
        replace_dataset(file.id, in, target);
        break;
      case 2:
      case 3:
        rewrite_values(file.id, in, target);
        break;
      case 4:
      case 5: {
        Owned object{H5Oopen(file.id, target.empty() ? "/" : target.c_str(), H5P_DEFAULT),
                     H5Oclose};
        std::vector<std::string> names =
            object.id < 0 ? std::vector<std::string>{} : attribute_names(object.id);
        names.push_back(in.ConsumeRandomLengthString(16));
        const std::string attr = names[in.ConsumeIntegralInRange<size_t>(0, names.size() - 1)];
        if (in.ConsumeIntegralInRange(0, 3) == 0) {
          if (object.id >= 0) H5Adelete(object.id, attr.c_str());
        } else {
          set_attribute(file.id, in, target, attr);
        }
        break;
      }
      case 6:
        remove_link(file.id, target);
        break;
      case 7: {
        remove_link(file.id, target);
        Owned lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
        H5Pset_create_intermediate_group(lcpl.id, 1);
        Owned group{H5Gcreate2(file.id, target.c_str(), lcpl.id, H5P_DEFAULT, H5P_DEFAULT),
                    H5Gclose};
        break;
      }
      case 8: {  // a hard link to any object: aliases, and cycles when it is an ancestor
        const std::string to = pick_path(in, paths);
        if (!target.empty() && H5Lexists(file.id, target.c_str(), H5P_DEFAULT) <= 0) {
          H5Lcreate_hard(file.id, to.empty() ? "/" : to.c_str(), file.id, target.c_str(),
                         H5P_DEFAULT, H5P_DEFAULT);
        }
        break;
      }
      default: {  // a soft or external link to anything, often to nothing
        const std::string to = pick_path(in, paths);
        remove_link(file.id, target);
        if (in.ConsumeBool()) {
          H5Lcreate_soft(to.empty() ? "/" : ("/" + to).c_str(), file.id, target.c_str(),
                         H5P_DEFAULT, H5P_DEFAULT);
        } else {
          H5Lcreate_external("missing_file.h5", ("/" + to).c_str(), file.id, target.c_str(),
                             H5P_DEFAULT, H5P_DEFAULT);
        }
      }
    }
  }
  return path.string();
}

// The file a target reads: in the CI targets the template VMOE_FUZZ_TEMPLATE edited by the input;
// in the *_bytes targets (VMOE_FUZZ_RAW_BYTES) the input bytes themselves.
inline std::string hdf5_input(const std::string& name, const uint8_t* data, size_t size) {
#ifdef VMOE_FUZZ_RAW_BYTES
  return write_input(name, data, size);
#else
  return edited_h5_file(VMOE_FUZZ_TEMPLATE, name, data, size);
#endif
}

}  // namespace vmoe::fuzz
