// NCCL error text and the dtype / reduction mappings.
#include "parallel/nccl_check.h"

namespace vmoe {

namespace detail {

namespace {

// ".../parallel/nccl_communicator.cpp" -> "parallel/nccl_communicator.cpp".
std::string short_path(const char* file) {
  std::string where(file);
  const size_t last = where.rfind('/');
  if (last != std::string::npos && last > 0) {
    const size_t before = where.rfind('/', last - 1);
    if (before != std::string::npos) where = where.substr(before + 1);
  }
  return where;
}

// NCCL's texts may end in or contain newlines: the message stays one line.
std::string one_line(const char* text) {
  std::string s = text != nullptr ? text : "";
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ')
    s.pop_back();
  return s;
}

}  // namespace

std::string nccl_error_text(ncclResult_t code, const char* call, const char* file, int line) {
  std::string text = std::string("NCCL call failed: ") + call + ": " +
                     one_line(ncclGetErrorString(code)) + " (result " + std::to_string(int(code)) +
                     ")";
  // The last error of this thread (the communicator argument is unused by NCCL).
  const std::string last = one_line(ncclGetLastError(nullptr));
  if (!last.empty()) text += ": " + last;
  return text + " at " + short_path(file) + ":" + std::to_string(line);
}

void throw_nccl_error(ncclResult_t code, const char* call, const char* file, int line) {
  throw NcclError(code, nccl_error_text(code, call, file, line));
}

}  // namespace detail

ncclDataType_t nccl_data_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
      return ncclUint8;
  }
  throw std::invalid_argument("no NCCL datatype for dtype " + std::to_string(int(dtype)) +
                              " (expected f32, f64, bf16, i32, i64 or u8)");
}

ncclRedOp_t nccl_reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  throw std::invalid_argument("no NCCL reduction for ReduceOp " + std::to_string(int(op)) +
                              " (expected sum, max or min)");
}

}  // namespace vmoe
