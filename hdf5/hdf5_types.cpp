// H5Type sizes, names, HDF5 types and the DType mapping.
#include "hdf5/hdf5_types.h"

#include <stdexcept>
#include <string>

namespace vmoe {

namespace {

[[noreturn]] void unknown(H5Type t) {
  throw std::invalid_argument("unknown H5Type " + std::to_string(int(t)));
}

}  // namespace

size_t h5_type_size(H5Type t) {
  switch (t) {
    case H5Type::f32:
    case H5Type::i32:
      return 4;
    case H5Type::f64:
    case H5Type::i64:
      return 8;
    case H5Type::u8:
      return 1;
    case H5Type::bf16:
      return 2;
  }
  unknown(t);
}

const char* h5_type_name(H5Type t) {
  switch (t) {
    case H5Type::f32:
      return "f32";
    case H5Type::f64:
      return "f64";
    case H5Type::i32:
      return "i32";
    case H5Type::i64:
      return "i64";
    case H5Type::u8:
      return "u8";
    case H5Type::bf16:
      return "bf16";
  }
  unknown(t);
}

hid_t h5_file_type(H5Type t) {
  switch (t) {
    case H5Type::f32:
      return H5T_IEEE_F32LE;
    case H5Type::f64:
      return H5T_IEEE_F64LE;
    case H5Type::i32:
      return H5T_STD_I32LE;
    case H5Type::i64:
      return H5T_STD_I64LE;
    case H5Type::u8:
      return H5T_STD_U8LE;
    case H5Type::bf16:
      return H5T_STD_U16LE;
  }
  unknown(t);
}

hid_t h5_memory_type(H5Type t) {
  switch (t) {
    case H5Type::f32:
      return H5T_NATIVE_FLOAT;
    case H5Type::f64:
      return H5T_NATIVE_DOUBLE;
    case H5Type::i32:
      return H5T_NATIVE_INT32;
    case H5Type::i64:
      return H5T_NATIVE_INT64;
    case H5Type::u8:
      return H5T_NATIVE_UINT8;
    case H5Type::bf16:
      return H5T_NATIVE_UINT16;
  }
  unknown(t);
}

H5Type h5_type_of(DType t) {
  switch (t) {
    case DType::f32:
      return H5Type::f32;
    case DType::bf16:
      return H5Type::bf16;
    case DType::f64:
      return H5Type::f64;
    case DType::i32:
      return H5Type::i32;
    case DType::i64:
      return H5Type::i64;
    case DType::u8:
      return H5Type::u8;
  }
  throw std::invalid_argument("unknown DType " + std::to_string(int(t)));
}

DType dtype_of(H5Type t) {
  switch (t) {
    case H5Type::f32:
      return DType::f32;
    case H5Type::f64:
      return DType::f64;
    case H5Type::i32:
      return DType::i32;
    case H5Type::i64:
      return DType::i64;
    case H5Type::u8:
      return DType::u8;
    case H5Type::bf16:
      return DType::bf16;
  }
  unknown(t);
}

}  // namespace vmoe
