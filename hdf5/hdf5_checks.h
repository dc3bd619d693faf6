// Checks of what an HDF5 file declares, made before anything is allocated or read. A file is
// outside input: a dataset may declare terabytes it does not hold, an attribute may be an array
// where one value is expected. Every read in the project goes through these checks:
//  - datasets: a supported element type, a simple (or scalar) dataspace, the caller's expected
//    type and shape, at most kH5MaxDatasetBytes, and no more bytes than the file stores for it
//    (times kH5MaxCompressionRatio when it is compressed); external and virtual storage (data in
//    other files) is refused;
//  - attributes: the expected kind, exactly one value, at most kH5MaxAttributeBytes.
// Failures throw Hdf5Error with the reason only ("it has shape [2, 3], expected [N, H, W, C]");
// callers prefix the file and the dataset or attribute name.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hdf5/hdf5_types.h"

namespace vmoe {

// No dataset is read whole beyond this many bytes (1 TiB), whatever the file says.
inline constexpr int64_t kH5MaxDatasetBytes = int64_t(1) << 40;
// A compressed dataset may declare at most this many times the bytes it stores (deflate's best
// ratio is about 1032:1).
inline constexpr int64_t kH5MaxCompressionRatio = 1100;
// No attribute value is read beyond this many bytes (16 MiB).
inline constexpr int64_t kH5MaxAttributeBytes = int64_t(1) << 24;

// What a dataset holds, without its data.
struct H5DatasetInfo {
  H5Type type = H5Type::f32;
  std::vector<int64_t> shape;  // {} for a scalar
};

// What a caller expects of a dataset. Empty fields accept anything.
struct H5Expect {
  std::vector<H5Type> types;                  // the element types accepted
  std::optional<std::vector<int64_t>> shape;  // the shape; -1 = any size along that axis
  std::string shape_text;  // how to name the expected shape in errors ("[N, H, W, C]")
};

// "[2, 3, 4]"; "[]" for a scalar.
std::string h5_shape_str(const std::vector<int64_t>& shape);

// Product of `shape`; throws Hdf5Error for a negative dimension or more than 2^63 elements.
int64_t h5_checked_numel(const std::vector<int64_t>& shape);

// Element type and shape of the open dataset `ds`, after every check above (and `expect`).
// Call with the Hdf5Lock held.
H5DatasetInfo checked_dataset_info(hid_t ds, const H5Expect& expect = {});

// The kind of value an attribute must hold.
enum class H5AttrKind { integer, number, string };

// Checks that the open attribute `attr` holds one value of `kind` in at most
// kH5MaxAttributeBytes. Call with the Hdf5Lock held.
void check_single_value_attribute(hid_t attr, H5AttrKind kind);

// The value of a checked single-value string attribute (variable or fixed length).
std::string read_string_attribute(hid_t attr);

}  // namespace vmoe
