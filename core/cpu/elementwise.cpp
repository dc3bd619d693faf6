// CPU elementwise kernels: copy/convert, fill, broadcasting binary ops, unary ops and their
// derivatives, axpy-style updates.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "core/cpu/bias_gelu_rows.h"
#include "core/cpu/cpu_common.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"
#include "core/cpu/normal_cdf.h"
#include "core/elementwise_math.h"

namespace vmoe::cpu {

namespace {

template <class T>
T load_as(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f32:
      return T(static_cast<const float*>(base)[i]);
    case DType::f64:
      return T(static_cast<const double*>(base)[i]);
    case DType::i32:
      return T(static_cast<const int32_t*>(base)[i]);
    case DType::i64:
      return T(static_cast<const int64_t*>(base)[i]);
    case DType::u8:
      return T(static_cast<const uint8_t*>(base)[i]);
    case DType::bf16:
      return T(from_bf16(static_cast<const BFloat16*>(base)[i]));
  }
  return T(0);
}

template <class T>
void store_from(void* base, DType t, int64_t i, T v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(base)[i] = float(v);
      break;
    case DType::f64:
      static_cast<double*>(base)[i] = double(v);
      break;
    case DType::i32:
      static_cast<int32_t*>(base)[i] = int32_t(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(base)[i] = int64_t(v);
      break;
    case DType::u8:
      static_cast<uint8_t*>(base)[i] = uint8_t(v);
      break;
    case DType::bf16:
      static_cast<BFloat16*>(base)[i] = to_bf16(float(v));
      break;
  }
}

template <UnaryOp op, class T>
inline T apply_unary(T x) {
  return unary_value<FastMath>(op, x);
}

// d op(x)/dx given x and y = op(x).
template <UnaryOp op, class T>
inline T unary_derivative_of(T x, T y) {
  return unary_derivative<FastMath>(op, x, y);
}

// Same-type element copy between strided runs.
template <class W>
void strided_copy(const W* s, int64_t si, W* d, int64_t di, int64_t n) {
  if (si == 1 && di == 1) {
    std::memcpy(d, s, size_t(n) * sizeof(W));
  } else if (si == 0) {
    for (int64_t i = 0; i < n; ++i)
      d[i * di] = s[0];
  } else {
    for (int64_t i = 0; i < n; ++i)
      d[i * di] = s[i * si];
  }
}

// Every element through the 4-lane call (core/cpu/normal_cdf.h), in runs spread over the
// threads.
void normal_cdf_f32(const float* __restrict x, float* __restrict y, int64_t n) {
  constexpr int64_t kRun = 1024;  // a multiple of 4: only the last run has a partial vector
  const int64_t runs = (n + kRun - 1) / kRun;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t r = 0; r < runs; ++r)
    normal_cdf_run(x + r * kRun, y + r * kRun, std::min(kRun, n - r * kRun));
}

template <UnaryOp op, class T>
void unary_loop(const T* __restrict x, T* __restrict y, int64_t n) {
  if constexpr (op == UnaryOp::normal_cdf && std::is_same_v<T, float>) {
    normal_cdf_f32(x, y, n);
  } else {
#pragma omp parallel for simd if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      y[i] = apply_unary<op, T>(x[i]);
  }
}

template <UnaryOp op, class T>
void unary_backward_loop(const T* __restrict x, const T* __restrict y, const T* __restrict gy,
                         T* __restrict gx, int64_t n) {
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i)
    gx[i] = gy[i] * unary_derivative_of<op, T>(x[i], y[i]);
}

// Calls fn(std::integral_constant<UnaryOp, op>) so that loops are compiled per op (the
// switch outside the loop lets them vectorise).
template <class Fn>
void dispatch_unary(UnaryOp op, Fn&& fn) {
  switch (op) {
#define VMOE_UNARY_CASE(name)                             \
  case UnaryOp::name:                                     \
    fn(std::integral_constant<UnaryOp, UnaryOp::name>{}); \
    break;
    VMOE_UNARY_CASE(neg)
    VMOE_UNARY_CASE(exp)
    VMOE_UNARY_CASE(log)
    VMOE_UNARY_CASE(tanh)
    VMOE_UNARY_CASE(sigmoid)
    VMOE_UNARY_CASE(relu)
    VMOE_UNARY_CASE(sqrt)
    VMOE_UNARY_CASE(square)
    VMOE_UNARY_CASE(gelu)
    VMOE_UNARY_CASE(normal_cdf)
#undef VMOE_UNARY_CASE
  }
}

}  // namespace

void copy(const Tensor& src, const Tensor& dst) {
  const DType ts = src.dtype(), td = dst.dtype();
  char* sbase = static_cast<char*>(src.device_raw());
  char* dbase = static_cast<char*>(dst.device_raw());
  const size_t es = dtype_size(ts), ed = dtype_size(td);
  if (ts == td && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dbase, sbase, size_t(src.numel()) * es);
    return;
  }
  for_each_run<2>(src.shape(), {&src.strides(), &dst.strides()},
                  [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> inc) {
                    const char* s = sbase + off[0] * int64_t(es);
                    char* d = dbase + off[1] * int64_t(ed);
                    if (ts == td && es == 4) {
                      strided_copy(reinterpret_cast<const uint32_t*>(s), inc[0],
                                   reinterpret_cast<uint32_t*>(d), inc[1], n);
                    } else if (ts == td && es == 8) {
                      strided_copy(reinterpret_cast<const uint64_t*>(s), inc[0],
                                   reinterpret_cast<uint64_t*>(d), inc[1], n);
                    } else if (ts == td && es == 2) {
                      strided_copy(reinterpret_cast<const uint16_t*>(s), inc[0],
                                   reinterpret_cast<uint16_t*>(d), inc[1], n);
                    } else if (ts == td) {
                      strided_copy(reinterpret_cast<const uint8_t*>(s), inc[0],
                                   reinterpret_cast<uint8_t*>(d), inc[1], n);
                    } else {
                      for (int64_t i = 0; i < n; ++i)
                        store_from<double>(d, td, i * inc[1], load_as<double>(s, ts, i * inc[0]));
                    }
                  });
}

void fill(const Tensor& dst, double value) {
  char* base = static_cast<char*>(dst.device_raw());
  const DType t = dst.dtype();
  if (value == 0 && dst.is_contiguous()) {
    std::memset(base, 0, size_t(dst.numel()) * dtype_size(t));
    return;
  }
  if (t == DType::f32 && dst.is_contiguous()) {
    std::fill_n(static_cast<float*>(dst.device_raw()), dst.numel(), float(value));
    return;
  }
  for_each_run<1>(dst.shape(), {&dst.strides()},
                  [&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> inc) {
                    char* d = base + off[0] * int64_t(dtype_size(t));
                    for (int64_t i = 0; i < n; ++i)
                      store_from<double>(d, t, i * inc[0], value);
                  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  dispatch_float(out.dtype(), "binary", [&]<class T>(T) {
    const T* pa = a.device_data<T>();
    const T* pb = b.device_data<T>();
    T* po = out.device_data<T>();
    for_each_run<3>(out.shape(), {&a.strides(), &b.strides(), &out.strides()},
                    [&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> inc) {
                      const T* x = pa + off[0];
                      const T* y = pb + off[1];
                      T* z = po + off[2];
                      const int64_t sa = inc[0], sb = inc[1], so = inc[2];
                      switch (op) {
                        case BinaryOp::add:
                          for (int64_t i = 0; i < n; ++i)
                            z[i * so] = x[i * sa] + y[i * sb];
                          break;
                        case BinaryOp::sub:
                          for (int64_t i = 0; i < n; ++i)
                            z[i * so] = x[i * sa] - y[i * sb];
                          break;
                        case BinaryOp::mul:
                          for (int64_t i = 0; i < n; ++i)
                            z[i * so] = x[i * sa] * y[i * sb];
                          break;
                        case BinaryOp::div:
                          for (int64_t i = 0; i < n; ++i)
                            z[i * so] = x[i * sa] / y[i * sb];
                          break;
                        case BinaryOp::equal:
                          for (int64_t i = 0; i < n; ++i)
                            z[i * so] = x[i * sa] == y[i * sb] ? T(1) : T(0);
                          break;
                      }
                    });
  });
}

void unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  dispatch_float(out.dtype(), "unary", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    T* po = out.device_data<T>();
    const int64_t n = x.numel();
    dispatch_unary(op, [&](auto op_c) { unary_loop<decltype(op_c)::value, T>(px, po, n); });
  });
}

void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                    const Tensor& gx) {
  dispatch_float(gx.dtype(), "unary_backward", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    const T* py = y.device_data<T>();
    const T* pg = gy.device_data<T>();
    T* po = gx.device_data<T>();
    const int64_t n = x.numel();
    dispatch_unary(
        op, [&](auto op_c) { unary_backward_loop<decltype(op_c)::value, T>(px, py, pg, po, n); });
  });
}

namespace {

// One row of bias + GELU, the feature loop vectorised. The sum is rounded to T before the GELU
// as the composed add + gelu do, so both agree to the bit.
template <class T>
[[gnu::always_inline]] inline void bias_gelu_row(const T* __restrict xr, const T* __restrict b,
                                                 T* __restrict yr, int64_t f) {
#pragma omp simd
  for (int64_t j = 0; j < f; ++j)
    yr[j] = apply_unary<UnaryOp::gelu, T>(T(xr[j] + b[j]));
}

// The rows on 16-lane AVX-512 vectors (here and below), compiled so whatever the build's -march
// and run only where the CPU has it: the same arithmetic per element, so the same bits (the
// tests compare them with the composed ops' AVX2 loops), twice the elements per instruction.
__attribute__((target("avx512f,prefer-vector-width=512"))) void bias_gelu_row_avx512(
    const float* __restrict xr, const float* __restrict b, float* __restrict yr, int64_t f) {
  bias_gelu_row<float>(xr, b, yr, f);
}

// One row of bias + GELU's gradient.
template <class T>
[[gnu::always_inline]] inline void bias_gelu_backward_row(const T* __restrict x,
                                                          const T* __restrict b,
                                                          const T* __restrict gy, T* __restrict gx,
                                                          int64_t f) {
#pragma omp simd
  for (int64_t j = 0; j < f; ++j) {
    const T h = x[j] + b[j];
    // GELU's derivative reads only its input (the output argument is unused).
    gx[j] = gy[j] * unary_derivative_of<UnaryOp::gelu, T>(h, T(0));
  }
}

__attribute__((target("avx512f,prefer-vector-width=512"))) void bias_gelu_backward_row_avx512(
    const float* __restrict x, const float* __restrict b, const float* __restrict gy,
    float* __restrict gx, int64_t f) {
  bias_gelu_backward_row<float>(x, b, gy, gx, f);
}

}  // namespace

template <class T>
void bias_gelu_rows(const T* x, const T* bias, T* y, int64_t rows, int64_t f) {
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx512f()) {
      for (int64_t r = 0; r < rows; ++r)
        bias_gelu_row_avx512(x + r * f, bias, y + r * f, f);
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    bias_gelu_row<T>(x + r * f, bias, y + r * f, f);
}

template <class T>
void bias_gelu_backward_rows(const T* x, const T* bias, const T* gy, T* gx, int64_t rows,
                             int64_t f) {
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx512f()) {
      for (int64_t r = 0; r < rows; ++r)
        bias_gelu_backward_row_avx512(x + r * f, bias, gy + r * f, gx + r * f, f);
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    bias_gelu_backward_row<T>(x + r * f, bias, gy + r * f, gx + r * f, f);
}

template void bias_gelu_rows<float>(const float*, const float*, float*, int64_t, int64_t);
template void bias_gelu_rows<double>(const double*, const double*, double*, int64_t, int64_t);
template void bias_gelu_backward_rows<float>(const float*, const float*, const float*, float*,
                                             int64_t, int64_t);
template void bias_gelu_backward_rows<double>(const double*, const double*, const double*, double*,
                                              int64_t, int64_t);

// x, y [G, R, F], bias [G, F]: rows spread over threads.
void bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y) {
  const int64_t groups = x.size(0), rows = x.size(1), f = x.size(2);
  dispatch_float(y.dtype(), "bias_gelu", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    const T* pb = bias.device_data<T>();
    T* py = y.device_data<T>();
#pragma omp parallel for if (x.numel() > kParallelGrain)
    for (int64_t r = 0; r < groups * rows; ++r)
      bias_gelu_rows<T>(px + r * f, pb + (r / rows) * f, py + r * f, 1, f);
  });
}

void bias_gelu_backward(const Tensor& x, const Tensor& bias, const Tensor& gy, const Tensor& gx) {
  const int64_t groups = x.size(0), rows = x.size(1), f = x.size(2);
  dispatch_float(gx.dtype(), "bias_gelu_backward", [&]<class T>(T) {
    const T* px = x.device_data<T>();
    const T* pb = bias.device_data<T>();
    const T* pg = gy.device_data<T>();
    T* po = gx.device_data<T>();
#pragma omp parallel for if (x.numel() > kParallelGrain)
    for (int64_t r = 0; r < groups * rows; ++r) {
      const int64_t off = r * f;
      bias_gelu_backward_rows<T>(px + off, pb + (r / rows) * f, pg + off, po + off, 1, f);
    }
  });
}

void add_scaled(const Tensor& dst, const Tensor& src, double alpha) {
  dispatch_float(dst.dtype(), "add_scaled", [&]<class T>(T) {
    T* pd = dst.device_data<T>();
    const T* ps = src.device_data<T>();
    for_each_run<2>(dst.shape(), {&dst.strides(), &src.strides()},
                    [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> inc) {
                      T* d = pd + off[0];
                      const T* s = ps + off[1];
                      const T a = T(alpha);
                      for (int64_t i = 0; i < n; ++i)
                        d[i * inc[0]] += a * s[i * inc[1]];
                    });
  });
}

void scale(const Tensor& dst, double s) {
  dispatch_float(dst.dtype(), "scale", [&]<class T>(T) {
    T* pd = dst.device_data<T>();
    for_each_run<1>(dst.shape(), {&dst.strides()},
                    [&](std::array<int64_t, 1> off, int64_t n, std::array<int64_t, 1> inc) {
                      T* d = pd + off[0];
                      for (int64_t i = 0; i < n; ++i)
                        d[i * inc[0]] *= T(s);
                    });
  });
}

void sum_squares(const Tensor& x, const Tensor& out) {
  double total = 0;
  dispatch_float(x.dtype(), "sum_squares", [&]<class T>(T) {
    const T* p = x.device_data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for reduction(+ : total) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i)
      total += double(p[i]) * double(p[i]);
  });
  out.device_data<double>()[0] += total;
}

}  // namespace vmoe::cpu
