// Argument checks shared by the ops: every failure is an std::invalid_argument naming the op,
// the operands and what was expected.
#pragma once
#include <stdexcept>
#include <string>

#include "core/tensor.h"

namespace vmoe {

[[noreturn]] inline void op_error(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

inline void check_defined(const char* op, const Tensor& t, const char* name) {
  if (!t.defined()) op_error(op, std::string(name) + " is an undefined tensor");
}

inline void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    op_error(op, "operands on different devices (" + a.device().str() + " and " + b.device().str() +
                     ")");
}

inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    op_error(op, std::string("dtype mismatch: ") + a.desc() + " and " + b.desc());
}

inline void check_float(const char* op, const Tensor& t, const char* name) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    op_error(op, std::string(name) + " must be f32 or f64, got " + t.desc());
}

// The ops mixed precision runs on bf16 activations (stored bf16, computed in f32).
inline void check_float_or_bf16(const char* op, const Tensor& t, const char* name) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64 && t.dtype() != DType::bf16)
    op_error(op, std::string(name) + " must be f32 or f64 (or bf16 storage), got " + t.desc());
}

inline void check_index(const char* op, const Tensor& t, const char* name) {
  if (t.dtype() != DType::i32 && t.dtype() != DType::i64)
    op_error(op, std::string(name) + " must be i32 or i64, got " + t.desc());
}

inline void check_rank(const char* op, const Tensor& t, int64_t rank, const char* name) {
  if (t.dim() != rank)
    op_error(op,
             std::string(name) + " must have rank " + std::to_string(rank) + ", got " + t.desc());
}

}  // namespace vmoe
