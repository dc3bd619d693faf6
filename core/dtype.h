// Element types a Tensor can hold, their sizes and names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vmoe {

enum class DType : uint8_t { f32, bf16, f64, i32, i64, u8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "f32", "bf16", ...; throws std::invalid_argument naming the text otherwise.
DType parse_dtype(const std::string& name);
bool is_floating(DType t);

// bfloat16 as raw bits; conversions round to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
};
BFloat16 to_bf16(float v);
float from_bf16(BFloat16 v);

}  // namespace vmoe
