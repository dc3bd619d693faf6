// Hdf5File: plain HDF5 files of raw typed arrays and attributes on the serial sec2 driver.
#include "hdf5/hdf5_file.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>

#include "hdf5/hdf5_handle.h"

namespace vmoe {

namespace {

// Chunks are at most this big: the size of HDF5's default per-dataset chunk cache.
constexpr size_t kTargetChunkBytes = size_t(1) << 20;
// Dataset attribute that marks uint16 data as bfloat16 bits (read in hdf5_checks.cpp).
constexpr const char* kDtypeAttr = "dtype";
constexpr const char* kBf16 = "bf16";

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

// `name` without leading '/'; rejects empty names and empty components ("a//b", "a/").
std::string normalize_name(const std::string& name, const char* what) {
  const size_t start = name.find_first_not_of('/');
  const std::string n = start == std::string::npos ? std::string() : name.substr(start);
  if (n.empty()) {
    throw std::invalid_argument(std::string(what) + " name must not be empty, got " +
                                in_quotes(name));
  }
  if (n.back() == '/' || n.find("//") != std::string::npos) {
    throw std::invalid_argument(std::string(what) + " name " + in_quotes(name) +
                                " has an empty path component");
  }
  return n;
}

// An attribute key split into the object it belongs to ("." for the root group) and the
// attribute name: "case_token/image_size" -> {"case_token", "image_size"}.
std::pair<std::string, std::string> split_attr_key(const std::string& key) {
  const std::string k = normalize_name(key, "attribute");
  const size_t slash = k.rfind('/');
  if (slash == std::string::npos) return {".", k};
  return {k.substr(0, slash), k.substr(slash + 1)};
}

// What is at `path` (H5I_GROUP, H5I_DATASET, ...), or H5I_BADID if nothing is: a missing
// component, or a non-group where a group is needed on the way.
H5I_type_t object_type(hid_t file, const std::string& path) {
  if (path == ".") return H5I_GROUP;
  size_t pos = 0;
  while (true) {
    const size_t next = path.find('/', pos);
    const std::string prefix = path.substr(0, next);
    if (VMOE_H5_CHECK(H5Lexists(file, prefix.c_str(), H5P_DEFAULT)) == 0) return H5I_BADID;
    H5ObjectId obj{VMOE_H5_CHECK(H5Oopen(file, prefix.c_str(), H5P_DEFAULT))};
    const H5I_type_t type = H5Iget_type(obj.get());
    if (next == std::string::npos) return type;
    if (type != H5I_GROUP) return H5I_BADID;
    pos = next + 1;
  }
}

// Throws if an existing object on the way to `path` is not a group (e.g. writing "a/b" where
// "a" is a dataset), which HDF5 would report less clearly.
void check_parents_are_groups(hid_t file, const std::string& path) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    const H5I_type_t type = object_type(file, parent);
    if (type == H5I_BADID) return;  // created below
    if (type != H5I_GROUP) throw Hdf5Error(in_quotes(parent) + " exists and is not a group");
  }
}

// Link creation properties that create missing intermediate groups.
H5PlistId intermediate_groups_lcpl() {
  H5PlistId lcpl{VMOE_H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  VMOE_H5_CHECK(H5Pset_create_intermediate_group(lcpl.get(), 1));
  return lcpl;
}

// Chunk shape of a non-empty dataset: whole trailing rows, leading dimensions cut until a
// chunk holds at most kTargetChunkBytes.
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, size_t elem_size) {
  std::vector<hsize_t> chunk = dims;
  auto bytes = [&] {
    size_t b = elem_size;
    for (hsize_t c : chunk)
      b *= size_t(c);
    return b;
  };
  for (size_t d = 0; d < chunk.size() && bytes() > kTargetChunkBytes; ++d) {
    const size_t per_index = bytes() / size_t(chunk[d]);  // bytes of one step along d
    chunk[d] = std::max<hsize_t>(1, hsize_t(kTargetChunkBytes / per_index));
  }
  return chunk;
}

// A scalar variable-length UTF-8 string type, the way h5py stores str attributes.
H5TypeId vlen_string_type() {
  H5TypeId type{VMOE_H5_CHECK(H5Tcopy(H5T_C_S1))};
  VMOE_H5_CHECK(H5Tset_size(type.get(), H5T_VARIABLE));
  VMOE_H5_CHECK(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  return type;
}

// Creates (or replaces) attribute `name` of `obj` with a scalar dataspace and writes `value`,
// given in memory type `mem_type`.
void write_attr(hid_t obj, const std::string& name, hid_t stored_type, hid_t mem_type,
                const void* value) {
  if (VMOE_H5_CHECK(H5Aexists(obj, name.c_str())) > 0) {
    VMOE_H5_CHECK(H5Adelete(obj, name.c_str()));
  }
  H5SpaceId space{VMOE_H5_CHECK(H5Screate(H5S_SCALAR))};
  H5AttrId attr{VMOE_H5_CHECK(
      H5Acreate2(obj, name.c_str(), stored_type, space.get(), H5P_DEFAULT, H5P_DEFAULT))};
  VMOE_H5_CHECK(H5Awrite(attr.get(), mem_type, value));
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    throw std::invalid_argument("attribute " + in_quotes(name) +
                                ": string values must not contain NUL characters");
  }
  H5TypeId type = vlen_string_type();
  const char* chars = value.c_str();
  write_attr(obj, name, type.get(), type.get(), &chars);
}

// H5Lvisit callback: collects the paths of datasets reached through hard links.
herr_t collect_dataset(hid_t group, const char* name, const H5L_info_t* info, void* data) {
  if (info->type != H5L_TYPE_HARD) return 0;
  const hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
  if (obj < 0) return -1;
  const bool is_dataset = H5Iget_type(obj) == H5I_DATASET;
  H5Oclose(obj);
  if (is_dataset) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

}  // namespace

int64_t H5Array::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

struct Hdf5File::Impl {
  H5FileId file;
};

Hdf5File::Hdf5File(const std::string& path, Mode mode) : path_(path), mode_(mode) {
  hdf5_init();
  Hdf5Lock lock;
  const char* purpose = mode == Mode::Read     ? "reading"
                        : mode == Mode::Create ? "writing"
                                               : "appending";
  auto fail = [&](const std::string& why) {
    throw Hdf5Error("cannot open HDF5 file " + in_quotes(path) + " for " + purpose + ": " + why);
  };
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (mode == Mode::Read && !exists) fail("no such file");
  if (exists && fs::is_directory(path, ec)) fail("it is a directory");

  H5PlistId fapl{H5Pcreate(H5P_FILE_ACCESS)};
  // The serial driver, explicitly: no MPI needed. Objects in the 1.8 format or newer allow
  // large attributes (dense storage) and are readable by every current HDF5 and h5py.
  if (!fapl || H5Pset_fapl_sec2(fapl.get()) < 0 ||
      H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
    fail(hdf5_error_stack());
  }
  hid_t id = H5I_INVALID_HID;
  if (mode == Mode::Read) {
    id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  } else if (mode == Mode::Append && exists) {
    id = H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get());
  } else {
    id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  }
  if (id < 0) fail(hdf5_error_stack());
  impl_ = std::make_unique<Impl>();
  impl_->file = H5FileId(id);
}

Hdf5File::~Hdf5File() = default;
Hdf5File::Hdf5File(Hdf5File&& other) noexcept = default;
Hdf5File& Hdf5File::operator=(Hdf5File&& other) noexcept = default;

Hdf5File::Impl& Hdf5File::impl() const {
  if (!impl_) throw Hdf5Error("HDF5 file " + in_quotes(path_) + " is closed");
  return *impl_;
}

void Hdf5File::require_writable(const std::string& what) const {
  if (mode_ == Mode::Read) {
    throw Hdf5Error("cannot " + what + ": HDF5 file " + in_quotes(path_) + " is open read-only");
  }
}

void Hdf5File::write(const std::string& name, H5Type t, const std::vector<int64_t>& shape,
                     const void* data) {
  Hdf5Lock lock;
  const std::string n = normalize_name(name, "dataset");
  require_writable("write dataset " + in_quotes(n));
  int64_t numel = 0;
  try {
    numel = h5_checked_numel(shape);
  } catch (const Hdf5Error& e) {
    throw std::invalid_argument("dataset " + in_quotes(n) + ": " + e.what());
  }
  if (numel > 0 && data == nullptr) {
    throw std::invalid_argument("dataset " + in_quotes(n) + ": data is null for " +
                                std::to_string(numel) + " elements");
  }
  const hid_t file = impl().file.get();
  const hid_t mem_type = h5_memory_type(t);
  try {
    const H5I_type_t existing = object_type(file, n);
    if (existing == H5I_DATASET) {
      H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(file, n.c_str(), H5P_DEFAULT))};
      bool same = false;
      try {
        same = checked_dataset_info(ds.get(), {{t}, shape, {}}).shape == shape;
      } catch (const Hdf5Error&) {
        // of another type, shape or layout: replaced below
      }
      if (same) {
        if (numel > 0) {
          VMOE_H5_CHECK(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
        }
        return;
      }
      ds.close();
      VMOE_H5_CHECK(H5Ldelete(file, n.c_str(), H5P_DEFAULT));
    } else if (existing != H5I_BADID) {
      throw Hdf5Error("it exists and is not a dataset");
    } else {
      check_parents_are_groups(file, n);
    }

    const std::vector<hsize_t> dims(shape.begin(), shape.end());
    H5SpaceId space{VMOE_H5_CHECK(dims.empty()
                                      ? H5Screate(H5S_SCALAR)
                                      : H5Screate_simple(int(dims.size()), dims.data(), nullptr))};
    H5PlistId dcpl{VMOE_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
    if (!dims.empty() && numel > 0) {
      const std::vector<hsize_t> chunk = chunk_dims(dims, h5_type_size(t));
      VMOE_H5_CHECK(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()));
      VMOE_H5_CHECK(H5Pset_fletcher32(dcpl.get()));
    }
    H5PlistId lcpl = intermediate_groups_lcpl();
    H5DatasetId ds{VMOE_H5_CHECK(H5Dcreate2(file, n.c_str(), h5_file_type(t), space.get(),
                                            lcpl.get(), dcpl.get(), H5P_DEFAULT))};
    if (t == H5Type::bf16) write_string_attr(ds.get(), kDtypeAttr, kBf16);
    if (numel > 0) {
      VMOE_H5_CHECK(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    }
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot write dataset " + in_quotes(n) + " to HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

namespace {

// Dataset `n` of `file`, opened, with its element type and shape after the checks of
// checked_dataset_info(); throws Hdf5Error saying why it is not a readable dataset.
struct OpenedDataset {
  H5DatasetId ds;
  H5DatasetInfo info;
};

OpenedDataset open_dataset(hid_t file, const std::string& n, const H5Expect& expect) {
  const H5I_type_t kind = object_type(file, n);
  if (kind == H5I_BADID) throw Hdf5Error("no such dataset");
  if (kind != H5I_DATASET) throw Hdf5Error("it is a group, not a dataset");
  H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(file, n.c_str(), H5P_DEFAULT))};
  H5DatasetInfo info = checked_dataset_info(ds.get(), expect);
  return {std::move(ds), std::move(info)};
}

}  // namespace

H5Array Hdf5File::read(const std::string& name, const H5Expect& expect) const {
  Hdf5Lock lock;
  const std::string n = normalize_name(name, "dataset");
  try {
    OpenedDataset d = open_dataset(impl().file.get(), n, expect);
    H5Array out;
    out.type = d.info.type;
    out.shape = d.info.shape;
    out.bytes.resize(size_t(out.numel()) * h5_type_size(out.type));
    if (!out.bytes.empty()) {
      VMOE_H5_CHECK(H5Dread(d.ds.get(), h5_memory_type(out.type), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                            out.bytes.data()));
    }
    return out;
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot read dataset " + in_quotes(n) + " from HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

H5Array Hdf5File::read_rows(const std::string& name, int64_t first, int64_t count,
                            const H5Expect& expect) const {
  Hdf5Lock lock;
  const std::string n = normalize_name(name, "dataset");
  try {
    OpenedDataset d = open_dataset(impl().file.get(), n, expect);
    const std::vector<int64_t>& shape = d.info.shape;
    if (shape.empty() || first < 0 || count < 0 || first > shape[0] - count) {
      throw Hdf5Error("rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                      ") are not within the leading axis of its shape " + h5_shape_str(shape));
    }
    H5Array out;
    out.type = d.info.type;
    out.shape = shape;
    out.shape[0] = count;
    out.bytes.resize(size_t(out.numel()) * h5_type_size(out.type));
    if (!out.bytes.empty()) {
      std::vector<hsize_t> start(shape.size(), 0), dims(out.shape.begin(), out.shape.end());
      start[0] = hsize_t(first);
      H5SpaceId file_space{VMOE_H5_CHECK(H5Dget_space(d.ds.get()))};
      VMOE_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                        dims.data(), nullptr));
      H5SpaceId mem_space{VMOE_H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr))};
      VMOE_H5_CHECK(H5Dread(d.ds.get(), h5_memory_type(out.type), mem_space.get(), file_space.get(),
                            H5P_DEFAULT, out.bytes.data()));
    }
    return out;
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot read dataset " + in_quotes(n) + " from HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

H5DatasetInfo Hdf5File::info(const std::string& name, const H5Expect& expect) const {
  Hdf5Lock lock;
  const std::string n = normalize_name(name, "dataset");
  try {
    return open_dataset(impl().file.get(), n, expect).info;
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot inspect dataset " + in_quotes(n) + " in HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

bool Hdf5File::has(const std::string& name) const {
  Hdf5Lock lock;
  const std::string n = normalize_name(name, "dataset");
  const hid_t file = impl().file.get();
  try {
    return object_type(file, n) == H5I_DATASET;
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot look up " + in_quotes(n) + " in HDF5 file " + in_quotes(path_) + ": " +
                    e.what());
  }
}

std::vector<std::string> Hdf5File::list() const {
  Hdf5Lock lock;
  const hid_t file = impl().file.get();
  std::vector<std::string> names;
  try {
    VMOE_H5_CHECK(H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &names));
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot list the datasets of HDF5 file " + in_quotes(path_) + ": " + e.what());
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// Opens the group or dataset an attribute key refers to; with `create`, a missing object is
// created as a group. Returns an empty id if it is missing (and not created).
H5ObjectId attr_owner(hid_t file, const std::string& object, bool create) {
  if (object_type(file, object) == H5I_BADID) {
    if (!create) return H5ObjectId();
    check_parents_are_groups(file, object);
    H5PlistId lcpl = intermediate_groups_lcpl();
    H5GroupId group{
        VMOE_H5_CHECK(H5Gcreate2(file, object.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT))};
  }
  return H5ObjectId{VMOE_H5_CHECK(H5Oopen(file, object.c_str(), H5P_DEFAULT))};
}

}  // namespace

void Hdf5File::set_attr(const std::string& key, const std::string& value) {
  Hdf5Lock lock;
  const auto [object, attr] = split_attr_key(key);
  require_writable("set attribute " + in_quotes(key));
  try {
    H5ObjectId owner = attr_owner(impl().file.get(), object, /*create=*/true);
    write_string_attr(owner.get(), attr, value);
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot set attribute " + in_quotes(key) + " of HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

void Hdf5File::set_attr(const std::string& key, double value) {
  Hdf5Lock lock;
  const auto [object, attr] = split_attr_key(key);
  require_writable("set attribute " + in_quotes(key));
  try {
    H5ObjectId owner = attr_owner(impl().file.get(), object, /*create=*/true);
    write_attr(owner.get(), attr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot set attribute " + in_quotes(key) + " of HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

void Hdf5File::set_attr_int(const std::string& key, int64_t value) {
  Hdf5Lock lock;
  const auto [object, attr] = split_attr_key(key);
  require_writable("set attribute " + in_quotes(key));
  try {
    H5ObjectId owner = attr_owner(impl().file.get(), object, /*create=*/true);
    write_attr(owner.get(), attr, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot set attribute " + in_quotes(key) + " of HDF5 file " + in_quotes(path_) +
                    ": " + e.what());
  }
}

bool Hdf5File::has_attr(const std::string& key) const {
  Hdf5Lock lock;
  const auto [object, attr] = split_attr_key(key);
  try {
    H5ObjectId owner = attr_owner(impl().file.get(), object, /*create=*/false);
    return owner && VMOE_H5_CHECK(H5Aexists(owner.get(), attr.c_str())) > 0;
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot look up attribute " + in_quotes(key) + " in HDF5 file " +
                    in_quotes(path_) + ": " + e.what());
  }
}

namespace {

// Opens attribute `key` for a getter, checks that it holds one value of `kind` and hands it to
// `read_value`, wrapping every failure in one message that names the file and the key.
template <typename Fn>
auto get_attr(hid_t file, const std::string& path, const std::string& key, H5AttrKind kind,
              Fn read_value) {
  const auto [object, attr] = split_attr_key(key);
  try {
    H5ObjectId owner = attr_owner(file, object, /*create=*/false);
    if (!owner || VMOE_H5_CHECK(H5Aexists(owner.get(), attr.c_str())) == 0) {
      throw Hdf5Error("no such attribute");
    }
    H5AttrId a{VMOE_H5_CHECK(H5Aopen(owner.get(), attr.c_str(), H5P_DEFAULT))};
    check_single_value_attribute(a.get(), kind);
    return read_value(a.get());
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot read attribute " + in_quotes(key) + " of HDF5 file " + in_quotes(path) +
                    ": " + e.what());
  }
}

}  // namespace

std::string Hdf5File::get_attr_string(const std::string& key) const {
  Hdf5Lock lock;
  return get_attr(impl().file.get(), path_, key, H5AttrKind::string, read_string_attribute);
}

int64_t Hdf5File::get_attr_int(const std::string& key) const {
  Hdf5Lock lock;
  return get_attr(impl().file.get(), path_, key, H5AttrKind::integer, [](hid_t attr) {
    int64_t value = 0;
    VMOE_H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, &value));
    return value;
  });
}

double Hdf5File::get_attr_double(const std::string& key) const {
  Hdf5Lock lock;
  return get_attr(impl().file.get(), path_, key, H5AttrKind::number, [](hid_t attr) {
    double value = 0;
    VMOE_H5_CHECK(H5Aread(attr, H5T_NATIVE_DOUBLE, &value));
    return value;
  });
}

void Hdf5File::flush() {
  Hdf5Lock lock;
  const hid_t file = impl().file.get();
  if (mode_ == Mode::Read) return;
  try {
    VMOE_H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL));
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot flush HDF5 file " + in_quotes(path_) + ": " + e.what());
  }
}

void Hdf5File::close() {
  Hdf5Lock lock;
  if (!impl_) return;
  std::unique_ptr<Impl> impl = std::move(impl_);
  try {
    impl->file.close();
  } catch (const Hdf5Error& e) {
    throw Hdf5Error("cannot close HDF5 file " + in_quotes(path_) + ": " + e.what());
  }
}

}  // namespace vmoe
