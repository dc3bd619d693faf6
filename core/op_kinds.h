// The kinds of elementwise and softmax ops the backends implement. Their own header, free of
// the tensor types, so that CUDA kernel code (core/cuda/kernel_bodies.h, compiled by nvcc) can
// switch on them too.
#pragma once
#include <cstdint>

namespace vmoe {

enum class BinaryOp : uint8_t { add, sub, mul, div, equal };  // equal: 1 where a == b, else 0
enum class UnaryOp : uint8_t { neg, exp, log, tanh, sigmoid, relu, sqrt, square, gelu, normal_cdf };
enum class SoftmaxKind : bool { plain = false, log = true };

}  // namespace vmoe
