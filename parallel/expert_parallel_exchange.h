// Expert parallelism (PAPER.md / DESIGN.md "Expert exchange"): the Pe ranks of an expert group
// each hold E / Pe consecutive experts. The dispatched buffer [E, R, D] of every rank is cut
// along the capacity axis into chunks; chunk c goes to the experts' owners with a
// non-blocking all-to-all, the owner runs its experts on [E_local, sum of the ranks' rows, D],
// and the outputs come back with a second all-to-all. The exchange of chunk c + 1 and the
// return of chunk c - 1 are in flight while chunk c is computed; backward runs the mirror
// image in reverse chunk order. Ranks may hold different R (evaluation of uneven slices).
// Every buffer lives on the dispatched tensor's device and packing / unpacking are backend
// copies of views: nothing here reads tensor memory on the host (a communicator that needs host
// memory, such as MPI, stages device tensors itself).
#pragma once
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/expert_exchange.h"

namespace vmoe {

class ExpertParallelExchange final : public ExpertExchange {
 public:
  // `chunks`: pieces of the capacity axis (0 = automatic, see chunks_for()).
  ExpertParallelExchange(std::shared_ptr<Communicator> expert_group, int64_t num_experts,
                         int64_t chunks = 0);

  // dispatched [E, R, D] -> expert outputs [E, R, D]; `experts` gets [E / Pe, rows, D].
  // Collective over the expert group; differentiable (backward is collective too).
  // `occupied` (when given) travels with the tokens, chunk by chunk, to the owners' experts.
  Tensor operator()(const Tensor& dispatched, const Tensor& occupied,
                    const LocalExperts& experts) const override;
  // Dropless routing (parallel/expert_parallel_segments.cpp): rows [sum counts, D] sorted by
  // expert, counts [E] -> the experts' outputs in the same layout; the ranks first exchange
  // the per-expert counts, then the rows (all_to_all_v), and `experts` gets each local
  // expert's rows from every rank. Collective and differentiable as operator().
  Tensor segments(const Tensor& rows, const std::vector<int64_t>& counts,
                  const LocalSegments& experts) const override;

  int64_t experts_per_rank() const { return num_experts_ / group_->size(); }
  // Chunks used when the largest R over the group is `max_rows`, with rows of `row_bytes`.
  int64_t chunks_for(int64_t max_rows, int64_t row_bytes) const;
  const Communicator& group() const { return *group_; }

 private:
  std::shared_ptr<Communicator> group_;
  int64_t num_experts_;
  int64_t chunks_;
};

}  // namespace vmoe
