// The one mapping between element types and HDF5: H5Type (what a dataset holds), the HDF5 types
// it is stored as (portable little-endian) and read into (native), and DType <-> H5Type.
#pragma once
#include <hdf5.h>

#include <cstddef>

#include "core/dtype.h"

namespace vmoe {

// Element types of stored arrays. bf16 is stored as uint16 with a dataset attribute
// dtype = "bf16" so that other readers see the raw bits and know what they are.
enum class H5Type { f32, f64, i32, i64, u8, bf16 };

// Bytes per element (4, 8, 4, 8, 1, 2).
size_t h5_type_size(H5Type t);
// "f32", "f64", "i32", "i64", "u8", "bf16".
const char* h5_type_name(H5Type t);

// The portable little-endian HDF5 type an element type is stored as (H5T_IEEE_F32LE, ...).
hid_t h5_file_type(H5Type t);
// The native in-memory HDF5 type of an element type (H5T_NATIVE_FLOAT, ...).
hid_t h5_memory_type(H5Type t);

// Every DType has an H5Type of the same name and size, and back.
H5Type h5_type_of(DType t);
DType dtype_of(H5Type t);

}  // namespace vmoe
