// Routing ops: the token order of Batch Prioritized Routing and the fused slot assignment.
#include "core/backend.h"
#include "core/op_checks.h"
#include "core/ops.h"

namespace vmoe {

namespace {

void check_layout(const char* op, const SlotLayout& L) {
  if (L.tokens < 0 || L.k < 1 || L.experts < 1 || L.group_size < 1 || L.capacity < 0 ||
      L.last_capacity < 0 || L.rows_per_expert < 0) {
    op_error(op, "invalid slot layout (tokens " + std::to_string(L.tokens) + ", k " +
                     std::to_string(L.k) + ", experts " + std::to_string(L.experts) +
                     ", group size " + std::to_string(L.group_size) + ")");
  }
  const int64_t g = L.groups();
  const int64_t rows = g == 0 ? 0 : (g - 1) * L.capacity + L.last_capacity;
  if (rows != L.rows_per_expert)
    op_error(op, "rows_per_expert " + std::to_string(L.rows_per_expert) + " does not match " +
                     std::to_string(g) + " groups of capacity " + std::to_string(L.capacity));
}

}  // namespace

Tensor priority_order(const Tensor& priority_in, const SlotLayout& L) {
  check_defined("priority_order", priority_in, "priority");
  check_float("priority_order", priority_in, "priority");
  check_layout("priority_order", L);
  if (priority_in.dim() != 1 || priority_in.size(0) != L.tokens)
    op_error("priority_order",
             "priority must be [" + std::to_string(L.tokens) + "], got " + priority_in.desc());
  const Tensor priority = priority_in.detach();
  const int64_t full = L.full_groups() * L.group_size;
  std::vector<Tensor> parts;
  if (full > 0) {
    parts.push_back(argsort(priority.slice(0, 0, full).reshape({full / L.group_size, L.group_size}),
                            Order::descending)
                        .reshape({full}));
  }
  if (full < L.tokens) {
    parts.push_back(argsort(priority.slice(0, full, L.tokens), Order::descending));
  }
  if (parts.empty()) return Tensor::empty({0}, DType::i64, priority.device());
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

SlotAssignment assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& L) {
  check_defined("assign_slots", experts, "experts");
  check_layout("assign_slots", L);
  if (experts.dtype() != DType::i64 || experts.shape() != Shape{L.tokens, L.k})
    op_error("assign_slots", "experts must be i64 [" + std::to_string(L.tokens) + ", " +
                                 std::to_string(L.k) + "], got " + experts.desc());
  if (order.defined()) {
    if (order.dtype() != DType::i64 || order.shape() != Shape{L.tokens})
      op_error("assign_slots",
               "order must be i64 [" + std::to_string(L.tokens) + "], got " + order.desc());
    check_same_device("assign_slots", experts, order);
  }
  const Device device = experts.device();
  require_entry(backend_for(device), Entry::assign_slots, DType::i64);
  SlotAssignment out{Tensor::empty({L.tokens * L.k}, DType::i64, device),
                     Tensor::empty({L.experts * L.rows_per_expert}, DType::i64, device),
                     Tensor::empty({L.experts}, DType::i64, device)};
  backend_for(device).assign_slots(contiguous(experts),
                                   order.defined() ? contiguous(order) : Tensor(), L,
                                   out.combine_rows, out.dispatch_rows, out.expert_load);
  return out;
}

}  // namespace vmoe
