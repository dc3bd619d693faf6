// Dataset and attribute checks before allocation: types, dataspaces, shapes, byte bounds.
#include "hdf5/hdf5_checks.h"

#include <algorithm>
#include <limits>

#include "hdf5/hdf5_handle.h"

namespace vmoe {

namespace {

// Dataset attribute that marks uint16 data as bfloat16 bits.
constexpr const char* kDtypeAttr = "dtype";

std::string describe_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::string bits = std::to_string(8 * H5Tget_size(type)) + "-bit ";
  switch (cls) {
    case H5T_FLOAT:
      return bits + "float";
    case H5T_INTEGER:
      return bits + (H5Tget_sign(type) == H5T_SGN_2 ? "signed" : "unsigned") + " integer";
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ENUM:
      return "enum";
    default:
      return "class " + std::to_string(int(cls));
  }
}

const char* class_name(H5T_class_t cls) {
  switch (cls) {
    case H5T_INTEGER:
      return "an integer";
    case H5T_FLOAT:
      return "a real number";
    case H5T_STRING:
      return "a string";
    default:
      return "of an unsupported kind";
  }
}

// True if dataset `ds` carries the attribute dtype = "bf16".
bool marked_bf16(hid_t ds) {
  if (VMOE_H5_CHECK(H5Aexists(ds, kDtypeAttr)) <= 0) return false;
  H5AttrId attr{VMOE_H5_CHECK(H5Aopen(ds, kDtypeAttr, H5P_DEFAULT))};
  try {
    check_single_value_attribute(attr.get(), H5AttrKind::string);
  } catch (const Hdf5Error&) {
    return false;
  }
  return read_string_attribute(attr.get()) == "bf16";
}

// The element type a dataset holds, or nullopt if it is none of H5Type.
std::optional<H5Type> stored_type(hid_t ds, hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT) {
    if (size == 4) return H5Type::f32;
    if (size == 8) return H5Type::f64;
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (is_signed && size == 4) return H5Type::i32;
    if (is_signed && size == 8) return H5Type::i64;
    if (!is_signed && size == 1) return H5Type::u8;
    if (!is_signed && size == 2 && marked_bf16(ds)) return H5Type::bf16;
  }
  return std::nullopt;
}

// Shape of a dataspace; throws for a null dataspace.
std::vector<int64_t> space_shape(hid_t space) {
  const H5S_class_t cls = H5Sget_simple_extent_type(space);
  if (cls == H5S_SCALAR) return {};
  if (cls != H5S_SIMPLE) throw Hdf5Error("it has a null dataspace (no shape)");
  const int rank = VMOE_H5_CHECK(H5Sget_simple_extent_ndims(space));
  std::vector<hsize_t> dims(size_t(rank), 0);
  VMOE_H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  std::vector<int64_t> shape;
  for (hsize_t d : dims) {
    if (d > hsize_t(std::numeric_limits<int64_t>::max())) {
      throw Hdf5Error("it declares a dimension of " + std::to_string(d) + " elements");
    }
    shape.push_back(int64_t(d));
  }
  return shape;
}

std::string types_text(const std::vector<H5Type>& types) {
  std::string s;
  for (size_t i = 0; i < types.size(); ++i)
    s += std::string(i == 0 ? "" : i + 1 == types.size() ? " or " : ", ") + h5_type_name(types[i]);
  return s;
}

bool shape_matches(const std::vector<int64_t>& shape, const std::vector<int64_t>& expected) {
  if (shape.size() != expected.size()) return false;
  for (size_t i = 0; i < shape.size(); ++i)
    if (expected[i] >= 0 && shape[i] != expected[i]) return false;
  return true;
}

std::string expected_shape_text(const H5Expect& e) {
  if (!e.shape_text.empty()) return e.shape_text;
  std::string s = "[";
  for (size_t i = 0; i < e.shape->size(); ++i)
    s += (i ? ", " : "") + ((*e.shape)[i] < 0 ? std::string("*") : std::to_string((*e.shape)[i]));
  return s + "]";
}

// Refuses data kept outside the file (external raw files, virtual datasets): reading them would
// open paths the file names. Returns true if the data is compressed (a filter other than the
// checksum and the byte shuffle).
bool check_storage_kind(hid_t ds) {
  H5PlistId dcpl{VMOE_H5_CHECK(H5Dget_create_plist(ds))};
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_VIRTUAL) throw Hdf5Error("it is a virtual dataset (data in other files)");
  if (VMOE_H5_CHECK(H5Pget_external_count(dcpl.get())) > 0) {
    throw Hdf5Error("its data is stored in external files");
  }
  const int filters = VMOE_H5_CHECK(H5Pget_nfilters(dcpl.get()));
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t nelmts = 0;
    unsigned config = 0;
    const H5Z_filter_t id =
        H5Pget_filter2(dcpl.get(), unsigned(i), &flags, &nelmts, nullptr, 0, nullptr, &config);
    if (id != H5Z_FILTER_FLETCHER32 && id != H5Z_FILTER_SHUFFLE) return true;
  }
  return false;
}

}  // namespace

std::string h5_shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t h5_checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Hdf5Error("negative dimension " + std::to_string(d) + " in its shape");
    if (d > 0 && n > std::numeric_limits<int64_t>::max() / d) {
      throw Hdf5Error("its shape " + h5_shape_str(shape) + " has more than 2^63 elements");
    }
    n *= d;
  }
  return n;
}

H5DatasetInfo checked_dataset_info(hid_t ds, const H5Expect& expect) {
  H5TypeId type{VMOE_H5_CHECK(H5Dget_type(ds))};
  H5SpaceId space{VMOE_H5_CHECK(H5Dget_space(ds))};
  const std::optional<H5Type> t = stored_type(ds, type.get());
  if (!t) {
    throw Hdf5Error(
        "its element type (" + describe_type(type.get()) + ") is not one of " +
        (expect.types.empty() ? "f32, f64, i32, i64, u8, bf16" : types_text(expect.types)));
  }
  H5DatasetInfo info{*t, space_shape(space.get())};
  if (!expect.types.empty() &&
      std::find(expect.types.begin(), expect.types.end(), *t) == expect.types.end()) {
    throw Hdf5Error(std::string("it holds ") + h5_type_name(*t) + ", expected " +
                    types_text(expect.types));
  }
  if (expect.shape && !shape_matches(info.shape, *expect.shape)) {
    throw Hdf5Error("it has shape " + h5_shape_str(info.shape) + ", expected " +
                    expected_shape_text(expect));
  }
  const int64_t numel = h5_checked_numel(info.shape);
  const int64_t elem = int64_t(h5_type_size(*t));
  if (numel > kH5MaxDatasetBytes / elem) {
    throw Hdf5Error("its shape " + h5_shape_str(info.shape) + " declares more than " +
                    std::to_string(kH5MaxDatasetBytes) + " bytes (the limit)");
  }
  const int64_t bytes = numel * elem;
  const bool compressed = check_storage_kind(ds);
  if (bytes > 0) {
    const int64_t stored = int64_t(H5Dget_storage_size(ds));
    const int64_t holds = compressed ? stored * kH5MaxCompressionRatio : stored;
    if (bytes > holds) {
      throw Hdf5Error("its shape " + h5_shape_str(info.shape) + " declares " +
                      std::to_string(bytes) + " bytes but the file stores " +
                      std::to_string(stored) + (compressed ? " (compressed)" : "") +
                      " bytes of it");
    }
  }
  return info;
}

void check_single_value_attribute(hid_t attr, H5AttrKind kind) {
  H5TypeId type{VMOE_H5_CHECK(H5Aget_type(attr))};
  const H5T_class_t cls = H5Tget_class(type.get());
  const bool ok = kind == H5AttrKind::string    ? cls == H5T_STRING
                  : kind == H5AttrKind::integer ? cls == H5T_INTEGER
                                                : cls == H5T_INTEGER || cls == H5T_FLOAT;
  if (!ok) {
    const char* expected = kind == H5AttrKind::string    ? "a string"
                           : kind == H5AttrKind::integer ? "an integer"
                                                         : "a number";
    throw Hdf5Error(std::string("it is ") + class_name(cls) + ", expected " + expected);
  }
  H5SpaceId space{VMOE_H5_CHECK(H5Aget_space(attr))};
  const H5S_class_t space_class = H5Sget_simple_extent_type(space.get());
  if (space_class != H5S_SCALAR) {
    const std::vector<int64_t> shape =
        space_class == H5S_SIMPLE ? space_shape(space.get()) : std::vector<int64_t>{0};
    if (h5_checked_numel(shape) != 1) {
      throw Hdf5Error("it is an array of shape " + h5_shape_str(shape) +
                      ", expected a single value");
    }
  }
  if (cls == H5T_STRING && VMOE_H5_CHECK(H5Tis_variable_str(type.get())) > 0) return;
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || int64_t(size) > kH5MaxAttributeBytes) {
    throw Hdf5Error("its value declares " + std::to_string(size) + " bytes, expected 1 to " +
                    std::to_string(kH5MaxAttributeBytes));
  }
  if (cls != H5T_STRING && size > 8) {
    throw Hdf5Error("it is a " + std::to_string(8 * size) +
                    "-bit number, expected at most 64 bits");
  }
}

std::string read_string_attribute(hid_t attr) {
  H5TypeId type{VMOE_H5_CHECK(H5Aget_type(attr))};
  if (VMOE_H5_CHECK(H5Tis_variable_str(type.get())) > 0) {
    H5TypeId mem{VMOE_H5_CHECK(H5Tcopy(H5T_C_S1))};
    VMOE_H5_CHECK(H5Tset_size(mem.get(), H5T_VARIABLE));
    VMOE_H5_CHECK(H5Tset_cset(mem.get(), H5Tget_cset(type.get())));
    char* chars = nullptr;
    VMOE_H5_CHECK(H5Aread(attr, mem.get(), &chars));
    std::string value = chars ? std::string(chars) : std::string();
    H5free_memory(chars);
    return value;
  }
  // Fixed-length: null-terminated, null-padded or space-padded.
  const size_t size = H5Tget_size(type.get());
  std::string value(size, '\0');
  VMOE_H5_CHECK(H5Aread(attr, type.get(), value.data()));
  const size_t nul = value.find('\0');
  if (nul != std::string::npos) value.resize(nul);
  if (H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD) {
    value.erase(value.find_last_not_of(' ') + 1);
  }
  return value;
}

}  // namespace vmoe
