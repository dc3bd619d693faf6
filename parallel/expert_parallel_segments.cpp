// The expert-parallel exchange of variable-size expert batches (dropless routing): each rank's
// rows sorted by expert go to the experts' owners, whose local experts run on exactly the rows
// they received, and the outputs come back in the sender's layout. The per-expert counts are
// host figures (the dropless layer reads them once per layer), exchanged first so that every
// owner knows the sizes of the rows' all_to_all_v. No chunked overlap here: the segments are
// ragged and the counts exchange is a synchronisation point anyway, so one exchange each way.
// As the fixed path, every copy runs on the rows' device through its backend.
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"
#include "parallel/expert_parallel_exchange.h"

namespace vmoe {

namespace {

// Who sends how many rows to whom, from the exchanged counts.
struct SegmentLayout {
  int64_t ranks = 1, local_experts = 0, dim = 0;
  std::vector<int64_t> sent;      // [E] rows this rank sends to every expert (owner-major)
  std::vector<int64_t> received;  // [Pe * E_local] rows from source j for local expert l

  int64_t sent_rows() const { return std::accumulate(sent.begin(), sent.end(), int64_t(0)); }
  int64_t received_rows() const {
    return std::accumulate(received.begin(), received.end(), int64_t(0));
  }
  // Elements this rank sends to every owner.
  std::vector<int64_t> counts_to_owners() const {
    std::vector<int64_t> out(size_t(ranks), 0);
    for (int64_t i = 0; i < ranks * local_experts; ++i)
      out[size_t(i / local_experts)] += sent[size_t(i)] * dim;
    return out;
  }
  // Elements this owner receives from every source.
  std::vector<int64_t> counts_from_sources() const {
    std::vector<int64_t> out(size_t(ranks), 0);
    for (int64_t i = 0; i < ranks * local_experts; ++i)
      out[size_t(i / local_experts)] += received[size_t(i)] * dim;
    return out;
  }
  // Rows of every local expert over all sources.
  std::vector<int64_t> expert_rows() const {
    std::vector<int64_t> out(size_t(local_experts), 0);
    for (int64_t i = 0; i < ranks * local_experts; ++i)
      out[size_t(i % local_experts)] += received[size_t(i)];
    return out;
  }
};

// Which way reorder() copies.
enum class Reorder : bool { to_experts = false, to_sources = true };

// Received rows [source j][local expert l][rows] (by_source, flat) <-> the experts' input
// [total, D] (by_expert: expert-major, source-major within each expert): one copy per
// non-empty (source, expert) block.
void reorder(const SegmentLayout& L, const Tensor& by_source, const Tensor& by_expert,
             Reorder direction) {
  if (L.dim == 0) return;
  const std::vector<int64_t> per_expert = L.expert_rows();
  std::vector<int64_t> expert_start(size_t(L.local_experts), 0);
  for (int64_t l = 1; l < L.local_experts; ++l)
    expert_start[size_t(l)] = expert_start[size_t(l - 1)] + per_expert[size_t(l - 1)];
  std::vector<int64_t> filled(size_t(L.local_experts), 0);  // rows placed per expert so far
  int64_t source_row = 0;
  for (int64_t j = 0; j < L.ranks; ++j) {
    for (int64_t l = 0; l < L.local_experts; ++l) {
      const int64_t n = L.received[size_t(j * L.local_experts + l)];
      if (n > 0) {
        Tensor block =
            by_source.slice(0, source_row * L.dim, (source_row + n) * L.dim).reshape({n, L.dim});
        const int64_t at = expert_start[size_t(l)] + filled[size_t(l)];
        Tensor rows = by_expert.slice(0, at, at + n);
        if (direction == Reorder::to_experts)
          copy_(rows, block);
        else
          copy_(block, rows);
      }
      source_row += n;
      filled[size_t(l)] += n;
    }
  }
}

// What backward needs from forward: the experts' input (a leaf) and output.
struct SavedSegments {
  std::shared_ptr<Communicator> group;
  SegmentLayout layout;
  DType dtype;
  Device device;
  Tensor input, output;
};

std::vector<Tensor> segments_backward(SavedSegments& saved, const Tensor& grad_output) {
  const SegmentLayout& L = saved.layout;
  Communicator& group = *saved.group;
  const int64_t total = L.received_rows(), mine = L.sent_rows();
  Tensor g = grad_output.detach().contiguous().reshape({mine * L.dim});
  Tensor at_owner = Tensor::empty({total * L.dim}, saved.dtype, saved.device);
  group.all_to_all_v(g, L.counts_to_owners(), at_owner, L.counts_from_sources());
  Tensor gx = Tensor::zeros({total, L.dim}, saved.dtype, saved.device);
  if (saved.output.defined() && saved.output.requires_grad()) {
    Tensor gy = Tensor::empty({total, L.dim}, saved.dtype, saved.device);
    reorder(L, at_owner, gy, Reorder::to_experts);
    run_backward(saved.output, gy);
    Tensor x_grad = saved.input.grad();
    if (x_grad.defined()) gx = x_grad.detach().contiguous();
  }
  saved.input = Tensor();
  saved.output = Tensor();
  Tensor send = Tensor::empty({total * L.dim}, saved.dtype, saved.device);
  reorder(L, send, gx, Reorder::to_sources);
  Tensor back = Tensor::empty({mine * L.dim}, saved.dtype, saved.device);
  group.all_to_all_v(send, L.counts_from_sources(), back, L.counts_to_owners());
  return {back.reshape({mine, L.dim})};
}

}  // namespace

Tensor ExpertParallelExchange::segments(const Tensor& rows_in, const std::vector<int64_t>& counts,
                                        const LocalSegments& experts) const {
  if (rows_in.dim() != 2 || int64_t(counts.size()) != num_experts_) {
    throw std::invalid_argument("expert exchange expects rows [sum counts, D] and " +
                                std::to_string(num_experts_) + " per-expert counts, got " +
                                rows_in.desc() + " and " + std::to_string(counts.size()) +
                                " counts");
  }
  int64_t sum = 0;
  for (int64_t c : counts) {
    if (c < 0)
      throw std::invalid_argument("expert exchange: negative row count " + std::to_string(c));
    sum += c;
  }
  if (sum != rows_in.size(0)) {
    throw std::invalid_argument("expert exchange: counts sum to " + std::to_string(sum) +
                                " but rows are " + rows_in.desc());
  }
  const Tensor rows = rows_in.detach().contiguous();
  const DType dtype = rows.dtype();
  const Device device = rows.device();
  SegmentLayout L;
  L.ranks = group_->size();
  L.local_experts = experts_per_rank();
  L.dim = rows.size(1);
  L.sent = counts;
  {
    // The counts are host figures: they travel in host tensors (block i to owner i).
    Tensor send = Tensor::from_vector(counts, {num_experts_}, kCpu);
    Tensor recv = Tensor::empty({num_experts_}, DType::i64, kCpu);
    group_->all_to_all(send, recv);
    L.received = recv.to_vector<int64_t>();
  }
  const int64_t total = L.received_rows();

  Tensor flat = rows.reshape({sum * L.dim});
  Tensor at_owner = Tensor::empty({total * L.dim}, dtype, device);
  group_->all_to_all_v(flat, L.counts_to_owners(), at_owner, L.counts_from_sources());
  Tensor x = Tensor::empty({total, L.dim}, dtype, device);
  reorder(L, at_owner, x, Reorder::to_experts);
  at_owner = Tensor();
  const bool recording = grad_enabled();
  if (recording) x.set_requires_grad(true);
  // Called even without rows, so that the local experts' parameters get their (zero)
  // gradients on every rank.
  Tensor y = experts(x, L.expert_rows());
  if (y.shape() != x.shape())
    throw std::logic_error("local experts returned " + y.desc() + " for input " + x.desc());
  Tensor send = Tensor::empty({total * L.dim}, dtype, device);
  reorder(L, send, y.detach().contiguous(), Reorder::to_sources);
  Tensor back = Tensor::empty({sum * L.dim}, dtype, device);
  group_->all_to_all_v(send, L.counts_from_sources(), back, L.counts_to_owners());
  Tensor out = back.reshape({sum, L.dim});
  // Recorded whenever grad mode is on, so that every rank of the group takes part in the
  // backward exchange, including a rank that had no rows.
  if (recording) {
    auto saved = std::make_shared<SavedSegments>();
    saved->group = group_;
    saved->layout = L;
    saved->dtype = dtype;
    saved->device = device;
    saved->input = x;
    saved->output = y;
    record("expert_exchange_segments", out, {rows_in},
           [saved](const Tensor& g) { return segments_backward(*saved, g); });
  }
  return out;
}

}  // namespace vmoe
