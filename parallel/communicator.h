// Communicator: the collectives the rest of vmoe uses, behind one interface with a
// single-process, an MPI (host memory; tensors on other devices are staged through host
// copies) and later an NCCL (CUDA tensors) implementation. Every collective must be called in
// the same order by every rank of the communicator. Tensors are contiguous, and the tensors of
// one call are on one device; counts are in elements of the tensor's dtype.
#pragma once
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

enum class ReduceOp : uint8_t { sum, max, min };

// One non-blocking operation in flight, owned by a CommRequest.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  // Blocks until the operation completed; throws if it failed.
  virtual void wait() = 0;
  // True once complete (never blocks).
  virtual bool done() = 0;
};

// Handle of a non-blocking collective. The tensors given to the call stay alive until it
// completes; the destructor waits for an operation nobody waited on. The results are in the
// output tensors once wait() returned or done() returned true (a transport that stages device
// tensors through host memory copies them back then).
class CommRequest {
 public:
  CommRequest() = default;  // an already completed request
  explicit CommRequest(std::unique_ptr<PendingOp> op) : op_(std::move(op)) {}
  CommRequest(CommRequest&&) noexcept = default;
  CommRequest& operator=(CommRequest&& other) noexcept {
    if (this != &other) {
      finish_quietly();
      op_ = std::move(other.op_);
    }
    return *this;
  }
  ~CommRequest() { finish_quietly(); }

  void wait() {
    if (!op_) return;
    std::unique_ptr<PendingOp> op = std::move(op_);
    op->wait();
  }
  bool done() { return !op_ || op_->done(); }

 private:
  void finish_quietly() noexcept {
    if (std::uncaught_exceptions() > 0) {
      // Unwinding after an error: the peers may never post their side, so waiting could hang.
      // The operation (and the buffers it holds) is left alive for the job abort that follows.
      static_cast<void>(op_.release());
      return;
    }
    try {
      wait();
    } catch (...) {
      // An error in an operation nobody waited for is reported by the job abort that follows.
    }
  }
  std::unique_ptr<PendingOp> op_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // What this communicator is for ("world", "expert group", ...), used in error messages.
  virtual const std::string& name() const = 0;

  // t (in place): the element-wise reduction over all ranks.
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
  // send [size * b] -> recv [size * b]: block i of send goes to rank i, block j of recv came
  // from rank j.
  virtual void all_to_all(const Tensor& send, Tensor& recv) = 0;
  // Variable splits: send_counts[i] elements (consecutive blocks in rank order) go to rank i,
  // recv_counts[j] arrive from rank j. Zero counts are allowed.
  virtual void all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts,
                            Tensor& recv, const std::vector<int64_t>& recv_counts) = 0;
  // t (in place) takes root's value on every rank.
  virtual void broadcast(Tensor& t, int root) = 0;
  // send [b] -> recv [size * b], block j from rank j.
  virtual void all_gather(const Tensor& send, Tensor& recv) = 0;
  virtual void barrier() = 0;

  // Non-blocking variants: the same contracts, completion through the returned request.
  virtual CommRequest iall_reduce(Tensor t, ReduceOp op = ReduceOp::sum) = 0;
  virtual CommRequest iall_to_all(Tensor send, Tensor recv) = 0;
  virtual CommRequest iall_to_all_v(Tensor send, std::vector<int64_t> send_counts, Tensor recv,
                                    std::vector<int64_t> recv_counts) = 0;
  virtual CommRequest ibroadcast(Tensor t, int root) = 0;
  virtual CommRequest iall_gather(Tensor send, Tensor recv) = 0;
  virtual CommRequest ibarrier() = 0;

  // Collective over this communicator: ranks passing the same color form a new communicator,
  // ordered by key (then by rank).
  virtual std::unique_ptr<Communicator> split(int color, int key, std::string name) const = 0;
};

// Scalar helpers (blocking): the reduction of one number over all ranks.
double all_reduce_scalar(Communicator& comm, double value, ReduceOp op = ReduceOp::sum);
int64_t all_reduce_scalar(Communicator& comm, int64_t value, ReduceOp op = ReduceOp::sum);

}  // namespace vmoe
