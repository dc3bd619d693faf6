// Chunked, overlapped all-to-all exchange of MoE tokens and its backward.
#include "parallel/expert_parallel_exchange.h"

#include <algorithm>
#include <stdexcept>

#include "core/autograd.h"
#include "core/ops.h"

namespace vmoe {

namespace {

// Which rows of every rank's [E, R_j, D] buffer form chunk c.
struct ChunkLayout {
  int64_t ranks = 1, me = 0, experts = 0, local_experts = 0, dim = 0, chunks = 1;
  std::vector<int64_t> rows;  // [Pe] R_j of every rank

  int64_t lo(int64_t j, int64_t c) const { return rows[size_t(j)] * c / chunks; }
  int64_t n(int64_t j, int64_t c) const { return lo(j, c + 1) - lo(j, c); }
  // Rows per local expert in chunk c over all sources.
  int64_t total(int64_t c) const {
    int64_t t = 0;
    for (int64_t j = 0; j < ranks; ++j)
      t += n(j, c);
    return t;
  }
  // This rank sends E_local * n(me, c) rows to every owner.
  std::vector<int64_t> counts_to_owners(int64_t c) const {
    return std::vector<int64_t>(size_t(ranks), local_experts * n(me, c) * dim);
  }
  // An owner receives E_local * n(j, c) rows from each source j.
  std::vector<int64_t> counts_from_sources(int64_t c) const {
    std::vector<int64_t> out(static_cast<size_t>(ranks));
    for (int64_t j = 0; j < ranks; ++j)
      out[size_t(j)] = local_experts * n(j, c) * dim;
    return out;
  }
};

// Every copy below runs on the tensors' device through its backend (copy_ of strided views):
// nothing here reads tensor memory on the host.

// Rows [lo, lo + n) of every expert of full [E, R, D] <-> packed [E, n, D] (owner-major,
// because experts are assigned to owners in consecutive blocks); packed is flat [E * n * D].
void pack_rows(const Tensor& full, int64_t lo, int64_t n, const Tensor& packed) {
  if (n == 0 || full.numel() == 0) return;
  Tensor dst = packed.reshape({full.size(0), n, full.size(2)});
  copy_(dst, full.detach().slice(1, lo, lo + n));
}
void unpack_rows(const Tensor& packed, int64_t lo, int64_t n, const Tensor& full) {
  if (n == 0 || full.numel() == 0) return;
  Tensor dst = full.slice(1, lo, lo + n);
  copy_(dst, packed.reshape({full.size(0), n, full.size(2)}));
}

// Which way reorder() copies.
enum class Reorder : bool { to_experts = false, to_sources = true };

// Received blocks [source j][local expert l][n_j rows][D] (by_source, flat) <-> experts' input
// [E_local, total, D] (source-major within each expert): one strided copy per source.
void reorder(const ChunkLayout& L, int64_t c, const Tensor& by_source, const Tensor& by_expert,
             Reorder direction) {
  int64_t source_offset = 0, row_in_expert = 0;  // in rows
  for (int64_t j = 0; j < L.ranks; ++j) {
    const int64_t nj = L.n(j, c);
    if (nj > 0 && L.local_experts > 0 && L.dim > 0) {
      const int64_t rows = L.local_experts * nj;
      Tensor block = by_source.slice(0, source_offset * L.dim, (source_offset + rows) * L.dim)
                         .reshape({L.local_experts, nj, L.dim});
      Tensor rows_of_j = by_expert.slice(1, row_in_expert, row_in_expert + nj);
      if (direction == Reorder::to_experts)
        copy_(rows_of_j, block);
      else
        copy_(block, rows_of_j);
    }
    source_offset += L.local_experts * nj;
    row_in_expert += nj;
  }
}

// What backward needs from forward: each chunk's expert input (a leaf) and output.
struct SavedChunks {
  std::shared_ptr<Communicator> group;
  ChunkLayout layout;
  DType dtype;
  Device device;
  std::vector<Tensor> inputs, outputs;  // [C] x_c [E_local, total_c, D], y_c
};

std::vector<Tensor> exchange_backward(SavedChunks& saved, const Tensor& grad_output) {
  const ChunkLayout& L = saved.layout;
  Communicator& group = *saved.group;
  const Tensor g = grad_output.detach().contiguous();
  const DType dtype = saved.dtype;
  const Device device = saved.device;
  Tensor grad_input = Tensor::zeros({L.experts, L.rows[size_t(L.me)], L.dim}, dtype, device);
  const size_t chunks = size_t(L.chunks);
  std::vector<CommRequest> to_owners(chunks), to_sources(chunks);
  std::vector<Tensor> at_owner(chunks), back(chunks);
  auto post_output_grad = [&](int64_t c) {
    const int64_t n = L.n(L.me, c);
    Tensor send = Tensor::empty({L.experts * n * L.dim}, dtype, device);
    pack_rows(g, L.lo(L.me, c), n, send);
    at_owner[size_t(c)] = Tensor::empty({L.local_experts * L.total(c) * L.dim}, dtype, device);
    to_owners[size_t(c)] = group.iall_to_all_v(send, L.counts_to_owners(c), at_owner[size_t(c)],
                                               L.counts_from_sources(c));
  };
  post_output_grad(L.chunks - 1);
  for (int64_t c = L.chunks - 1; c >= 0; --c) {
    if (c > 0) post_output_grad(c - 1);
    to_owners[size_t(c)].wait();
    const int64_t total = L.total(c);
    Tensor gx = Tensor::zeros({L.local_experts, total, L.dim}, dtype, device);
    const Tensor& y = saved.outputs[size_t(c)];
    if (total > 0 && y.requires_grad()) {
      Tensor gy = Tensor::empty({L.local_experts, total, L.dim}, dtype, device);
      reorder(L, c, at_owner[size_t(c)], gy, Reorder::to_experts);
      run_backward(y, gy);
      Tensor x_grad = saved.inputs[size_t(c)].grad();
      if (x_grad.defined()) gx = x_grad.detach().contiguous();
    }
    Tensor send = Tensor::empty({L.local_experts * total * L.dim}, dtype, device);
    reorder(L, c, send, gx, Reorder::to_sources);
    back[size_t(c)] = Tensor::empty({L.experts * L.n(L.me, c) * L.dim}, dtype, device);
    to_sources[size_t(c)] =
        group.iall_to_all_v(send, L.counts_from_sources(c), back[size_t(c)], L.counts_to_owners(c));
    saved.inputs[size_t(c)] = Tensor();
    saved.outputs[size_t(c)] = Tensor();
  }
  for (int64_t c = 0; c < L.chunks; ++c) {
    to_sources[size_t(c)].wait();
    unpack_rows(back[size_t(c)], L.lo(L.me, c), L.n(L.me, c), grad_input);
  }
  return {grad_input};
}

}  // namespace

ExpertParallelExchange::ExpertParallelExchange(std::shared_ptr<Communicator> expert_group,
                                               int64_t num_experts, int64_t chunks)
    : group_(std::move(expert_group)), num_experts_(num_experts), chunks_(chunks) {
  if (!group_) throw std::invalid_argument("ExpertParallelExchange needs an expert group");
  if (num_experts_ < 1 || num_experts_ % group_->size() != 0) {
    throw std::invalid_argument("cannot split " + std::to_string(num_experts_) +
                                " experts evenly over an expert group of " +
                                std::to_string(group_->size()) + " ranks");
  }
  if (chunks_ < 0 || chunks_ > 64) {
    throw std::invalid_argument("exchange chunks must be 0 (automatic) to 64, got " +
                                std::to_string(chunks_));
  }
}

int64_t ExpertParallelExchange::chunks_for(int64_t max_rows, int64_t row_bytes) const {
  if (max_rows <= 1) return 1;
  int64_t c = chunks_;
  if (c == 0) {
    // Enough chunks to overlap, but each message to an owner large enough (>= 64 KiB) that
    // per-message latency does not dominate.
    if (group_->size() == 1) return 1;
    const int64_t bytes_per_owner = experts_per_rank() * max_rows * row_bytes;
    c = 1;
    while (c < 8 && bytes_per_owner / (2 * c) >= (int64_t(64) << 10))
      c *= 2;
  }
  return std::min(c, max_rows);
}

Tensor ExpertParallelExchange::operator()(const Tensor& dispatched_in, const Tensor& occupied,
                                          const LocalExperts& experts) const {
  if (dispatched_in.dim() != 3 || dispatched_in.size(0) != num_experts_) {
    throw std::invalid_argument("expert exchange expects dispatched tokens [" +
                                std::to_string(num_experts_) + ", R, D], got " +
                                dispatched_in.desc());
  }
  if (occupied.defined() &&
      (occupied.dtype() != DType::i64 ||
       occupied.shape() != Shape{dispatched_in.size(0) * dispatched_in.size(1)}))
    throw std::invalid_argument("expert exchange expects occupied rows i64 [E * R] for " +
                                dispatched_in.desc() + ", got " + occupied.desc());
  const Tensor dispatched = dispatched_in.detach().contiguous();
  const DType dtype = dispatched.dtype();
  const Device device = dispatched.device();
  ChunkLayout L;
  L.ranks = group_->size();
  L.me = group_->rank();
  L.experts = num_experts_;
  L.local_experts = experts_per_rank();
  L.dim = dispatched.size(2);
  {
    // Shapes are known on the host: the row counts travel in host tensors.
    Tensor mine = Tensor::from_vector(std::vector<int64_t>{dispatched.size(1)}, {1}, kCpu);
    Tensor all = Tensor::empty({L.ranks}, DType::i64, kCpu);
    group_->all_gather(mine, all);
    L.rows = all.to_vector<int64_t>();
  }
  const int64_t max_rows = *std::max_element(L.rows.begin(), L.rows.end());
  L.chunks = chunks_for(max_rows, L.dim * int64_t(dtype_size(dtype)));
  // Which rows hold tokens travels beside them, one i64 per row, so that the owners' experts
  // skip the padding rows as in one process.
  const bool with_rows = occupied.defined();
  ChunkLayout rows_layout = L;
  rows_layout.dim = 1;
  const Tensor rows3 =
      with_rows ? occupied.detach().contiguous().reshape({L.experts, dispatched.size(1), 1})
                : Tensor();

  const bool recording = grad_enabled();
  auto saved = std::make_shared<SavedChunks>();
  saved->group = group_;
  saved->dtype = dtype;
  saved->device = device;
  Tensor out = Tensor::zeros({L.experts, L.rows[size_t(L.me)], L.dim}, dtype, device);
  const size_t chunks = size_t(L.chunks);
  std::vector<CommRequest> to_owners(chunks), to_sources(chunks), rows_to_owners(chunks);
  std::vector<Tensor> at_owner(chunks), back(chunks), rows_at_owner(chunks);
  saved->inputs.resize(chunks);
  saved->outputs.resize(chunks);

  auto post_tokens = [&](int64_t c) {
    const int64_t n = L.n(L.me, c);
    Tensor send = Tensor::empty({L.experts * n * L.dim}, dtype, device);
    pack_rows(dispatched, L.lo(L.me, c), n, send);
    at_owner[size_t(c)] = Tensor::empty({L.local_experts * L.total(c) * L.dim}, dtype, device);
    to_owners[size_t(c)] = group_->iall_to_all_v(send, L.counts_to_owners(c), at_owner[size_t(c)],
                                                 L.counts_from_sources(c));
    if (!with_rows) return;
    Tensor send_rows = Tensor::empty({L.experts * n}, DType::i64, device);
    pack_rows(rows3, L.lo(L.me, c), n, send_rows);
    rows_at_owner[size_t(c)] = Tensor::empty({L.local_experts * L.total(c)}, DType::i64, device);
    rows_to_owners[size_t(c)] =
        group_->iall_to_all_v(send_rows, rows_layout.counts_to_owners(c), rows_at_owner[size_t(c)],
                              rows_layout.counts_from_sources(c));
  };
  post_tokens(0);
  for (int64_t c = 0; c < L.chunks; ++c) {
    if (c + 1 < L.chunks) post_tokens(c + 1);
    to_owners[size_t(c)].wait();
    const int64_t total = L.total(c);
    Tensor x = Tensor::empty({L.local_experts, total, L.dim}, dtype, device);
    reorder(L, c, at_owner[size_t(c)], x, Reorder::to_experts);
    at_owner[size_t(c)] = Tensor();
    Tensor rows_x;  // [E_local * total] i64, in x's row order
    if (with_rows) {
      rows_to_owners[size_t(c)].wait();
      rows_x = Tensor::empty({L.local_experts, total, 1}, DType::i64, device);
      reorder(rows_layout, c, rows_at_owner[size_t(c)], rows_x, Reorder::to_experts);
      rows_at_owner[size_t(c)] = Tensor();
      rows_x = rows_x.reshape({L.local_experts * total});
    }
    Tensor y = x;
    if (total > 0) {
      if (recording) x.set_requires_grad(true);
      y = experts(x, rows_x);
      if (y.shape() != x.shape()) {
        throw std::logic_error("local experts returned " + y.desc() + " for input " + x.desc());
      }
    }
    Tensor y_data = y.detach().contiguous();
    Tensor send = Tensor::empty({L.local_experts * total * L.dim}, dtype, device);
    reorder(L, c, send, y_data, Reorder::to_sources);
    back[size_t(c)] = Tensor::empty({L.experts * L.n(L.me, c) * L.dim}, dtype, device);
    to_sources[size_t(c)] = group_->iall_to_all_v(send, L.counts_from_sources(c), back[size_t(c)],
                                                  L.counts_to_owners(c));
    if (recording) {
      saved->inputs[size_t(c)] = x;
      saved->outputs[size_t(c)] = y;
    }
  }
  for (int64_t c = 0; c < L.chunks; ++c) {
    to_sources[size_t(c)].wait();
    unpack_rows(back[size_t(c)], L.lo(L.me, c), L.n(L.me, c), out);
  }
  // Recorded whenever grad mode is on, so that every rank of the group takes part in the
  // backward exchange, including a rank that had no rows.
  if (recording) {
    saved->layout = L;
    record("expert_exchange", out, {dispatched_in},
           [saved](const Tensor& g) { return exchange_backward(*saved, g); });
  }
  return out;
}

}  // namespace vmoe
