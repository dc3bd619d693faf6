// CPU slot assignment of V-MoE routing (core/backend.h, assign_slots): per group, the k-major
// sequence of assignments in the given token order, each taking the next free slot of its
// expert while the group's capacity lasts. Groups are independent and run in parallel.
#include <algorithm>
#include <vector>

#include "core/cpu/cpu_common.h"
#include "core/cpu/kernels.h"

namespace vmoe::cpu {

void assign_slots(const Tensor& experts, const Tensor& order, const SlotLayout& L,
                  const Tensor& combine_rows, const Tensor& dispatch_rows,
                  const Tensor& expert_load) {
  const int64_t* pe = experts.device_data<int64_t>();
  const int64_t* po = order.defined() ? order.device_data<int64_t>() : nullptr;
  int64_t* combine = combine_rows.device_data<int64_t>();
  int64_t* dispatch = dispatch_rows.device_data<int64_t>();
  int64_t* load = expert_load.device_data<int64_t>();
  const int64_t n = L.tokens, k = L.k, e = L.experts, rows = L.rows_per_expert;
  const int64_t groups = L.groups();
  check_in_range(experts.device(), "assign_slots", "expert", pe, n * k, 0, e);
  for (int64_t g = 0; po && g < groups; ++g) {
    const int64_t start = g * L.group_size, s = std::min(L.group_size, n - start);
    check_in_range(order.device(), "assign_slots", "position", po + start, s, 0, s);
  }
  std::fill(dispatch, dispatch + e * rows, int64_t(-1));
  std::fill(combine, combine + n * k, int64_t(-1));
  // [G, E] kept assignments of each group, summed into expert_load afterwards.
  std::vector<int64_t> fill(size_t(groups * e), 0);
#pragma omp parallel for schedule(static) if (n * k > 4096 && groups > 1)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t start = g * L.group_size, s = std::min(L.group_size, n - start);
    const int64_t cap = g + 1 == groups ? L.last_capacity : L.capacity;
    const int64_t offset = g * L.capacity;
    int64_t* used = fill.data() + g * e;
    for (int64_t r = 0; r < k; ++r) {
      for (int64_t i = start; i < start + s; ++i) {
        const int64_t local = po ? po[i] : i - start;
        if (local < 0 || local >= s) continue;  // a kernel error, reported above
        const int64_t t = start + local;
        const int64_t x = pe[t * k + r];
        if (x < 0 || x >= e || used[x] >= cap) continue;  // out of range, or expert full
        const int64_t row = x * rows + offset + used[x]++;
        dispatch[row] = t;
        combine[t * k + r] = row;
      }
    }
  }
  for (int64_t x = 0; x < e; ++x) {
    int64_t total = 0;
    for (int64_t g = 0; g < groups; ++g)
      total += fill[size_t(g * e + x)];
    load[x] = total;
  }
}

}  // namespace vmoe::cpu
