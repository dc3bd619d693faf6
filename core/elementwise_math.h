// The math of the elementwise ops, once for every backend: op(x) and op'(x) as
// __host__ __device__ functions, so that the CPU backend (core/cpu/elementwise.cpp) and the CUDA
// kernels (core/cuda/kernel_bodies.h, compiled by nvcc) compute the same formulas. `Math`
// supplies exp and tanh: the CPU backend passes its vectorisable versions (core/cpu/fast_math.h),
// the CUDA kernels the standard ones (StdMath). Only <cmath> and the op kinds are included.
#pragma once
#include <cmath>

#include "core/op_kinds.h"

#if defined(__CUDACC__)
#define VMOE_HD __host__ __device__
#else
#define VMOE_HD
#endif

namespace vmoe {

// exp and tanh of the standard library (the device overloads under nvcc).
struct StdMath {
  template <class T>
  VMOE_HD static T exp(T x) {
    return std::exp(x);
  }
  template <class T>
  VMOE_HD static T tanh(T x) {
    return std::tanh(x);
  }
};

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

// op(x) for one element.
template <class Math, class T>
VMOE_HD inline T unary_value(UnaryOp op, T x) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return Math::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::tanh:
      return Math::tanh(x);
    case UnaryOp::sigmoid:
      return T(1) / (T(1) + Math::exp(-x));
    case UnaryOp::relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::square:
      return x * x;
    case UnaryOp::gelu: {  // the tanh approximation, as the CPU backend and the paper's ViT
      const T u = T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x);
      return T(0.5) * x * (T(1) + Math::tanh(u));
    }
    case UnaryOp::normal_cdf:
      // In double: f32 erfc takes a slow path (about 200 ns) wherever its result is subnormal,
      // which the load loss's far tail (arguments 9 to 14) hits often; double's does not, and
      // rounds the f32 result better.
      return T(0.5 * std::erfc(-double(x) * kInvSqrt2));
  }
  return x;
}

// d op(x) / dx, given x and y = op(x).
template <class Math, class T>
VMOE_HD inline T unary_derivative(UnaryOp op, T x, T y) {
  switch (op) {
    case UnaryOp::neg:
      return T(-1);
    case UnaryOp::exp:
      return y;
    case UnaryOp::log:
      return T(1) / x;
    case UnaryOp::tanh:
      return T(1) - y * y;
    case UnaryOp::sigmoid:
      return y * (T(1) - y);
    case UnaryOp::relu:
      return x > T(0) ? T(1) : T(0);
    case UnaryOp::sqrt:
      return T(0.5) / y;
    case UnaryOp::square:
      return T(2) * x;
    case UnaryOp::gelu: {
      const T u = T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x);
      const T t = Math::tanh(u);
      const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * x * x);
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du;
    }
    case UnaryOp::normal_cdf:
      return Math::exp(T(-0.5) * x * x) * T(kInvSqrt2Pi);
  }
  return T(0);
}

}  // namespace vmoe
