// Which dtypes each CPU kernel handles (Backend::supports_dtype). The op layer rejects the
// rest with its own errors; this table is what the backend op tests consult to report a
// missing combination as skipped.
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

bool supports_dtype(Entry entry, DType dtype) {
  const bool floating = dtype == DType::f32 || dtype == DType::f64;
  const bool numeric = floating || dtype == DType::i32 || dtype == DType::i64;
  switch (entry) {
    case Entry::copy:
    case Entry::fill:
    case Entry::index_select:  // moves whole rows as bytes
      return true;
    case Entry::argsort:
    case Entry::cumsum:
      return numeric;
    case Entry::assign_slots:
      return dtype == DType::i64;
    default:
      return floating;
  }
}

}  // namespace vmoe::cpu
