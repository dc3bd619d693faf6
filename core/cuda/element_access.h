// Loads and stores of the element types the CUDA kernels handle (f32, f64 and bf16 stored,
// f32 computed for bf16), as __host__ __device__ functions: kernel bodies are templates over the
// stored type T and compute in compute_t<T>. The bf16 rounding is core/dtype.cpp's (round to
// nearest even, NaN kept quiet), so the host run of a body matches the CPU backend bit for bit.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/elementwise_math.h"  // VMOE_HD

namespace vmoe::cuda {

template <class T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <class T>
using compute_t = typename ComputeType<T>::type;

template <class T>
VMOE_HD inline compute_t<T> load(const T& v) {
  return v;
}
VMOE_HD inline float load(const BFloat16& v) {
  const uint32_t u = uint32_t(v.bits) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

template <class T>
VMOE_HD inline void store(T& dst, compute_t<T> v) {
  dst = v;
}
VMOE_HD inline void store(BFloat16& dst, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) {
    dst.bits = uint16_t((u >> 16) | 0x40);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  dst.bits = uint16_t(u >> 16);
}

}  // namespace vmoe::cuda
