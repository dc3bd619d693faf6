// The dtype dispatch of the CUDA backend's entries (core/dtype_dispatch.h with the device
// named "cuda"): fn(T{}) with T the stored C++ type of the tensor's dtype.
#pragma once
#include "core/dtype_dispatch.h"

namespace vmoe::cuda {

[[noreturn]] inline void unsupported(const char* entry, DType t) {
  unsupported_dtype(entry, t, "cuda");
}

// f32, f64 and bf16.
template <class Fn>
void dispatch_floating(DType t, const char* entry, Fn&& fn) {
  dispatch_in<DTypeSet::floating>(t, entry, "cuda", fn);
}

// f32 and f64 only (optimizer state, top-k's router probabilities).
template <class Fn>
void dispatch_f32_f64(DType t, const char* entry, Fn&& fn) {
  dispatch_in<DTypeSet::f32_f64>(t, entry, "cuda", fn);
}

template <class Fn>
void dispatch_index(DType t, const char* entry, Fn&& fn) {
  dispatch_in<DTypeSet::index>(t, entry, "cuda", fn);
}

}  // namespace vmoe::cuda
