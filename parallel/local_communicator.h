// LocalCommunicator: the single-process Communicator (size 1, rank 0), where every collective
// is a copy (through the tensors' backend, so any device works) or a no-op. It makes the same
// argument checks as the MPI implementation, so code that runs in one process does not start
// failing on several. The checks themselves (namespace comm_check) are shared by every
// implementation.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace vmoe {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(std::string name = "local");

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) override;
  void all_to_all(const Tensor& send, Tensor& recv) override;
  void all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts, Tensor& recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(Tensor& t, int root) override;
  void all_gather(const Tensor& send, Tensor& recv) override;
  void barrier() override {}

  // Run at once; the returned requests are already complete.
  CommRequest iall_reduce(Tensor t, ReduceOp op = ReduceOp::sum) override;
  CommRequest iall_to_all(Tensor send, Tensor recv) override;
  CommRequest iall_to_all_v(Tensor send, std::vector<int64_t> send_counts, Tensor recv,
                            std::vector<int64_t> recv_counts) override;
  CommRequest ibroadcast(Tensor t, int root) override;
  CommRequest iall_gather(Tensor send, Tensor recv) override;
  CommRequest ibarrier() override { return CommRequest(); }

  // Another LocalCommunicator named `name` (color must be >= 0).
  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override;

 private:
  std::string name_;
};

// Argument checks made by every Communicator implementation before it communicates (so that a
// call that is wrong on every rank throws on every rank instead of hanging). Each throws
// std::invalid_argument with one line naming the operation `op` ("all_to_all",
// "iall_to_all", ...), the communicator's name, rank and size, and the offending values.
namespace comm_check {

// "all_to_all on communicator 'world' (rank 1 of 4)".
std::string where(const Communicator& comm, const char* op);
// `t` is defined and contiguous (any device: an implementation that needs host memory stages
// it); `role` is "send", "recv" or "tensor".
void tensor(const Communicator& comm, const char* op, const char* role, const Tensor& t);
// t can be reduced (bf16 cannot).
void all_reduce(const Communicator& comm, const char* op, const Tensor& t);
// send [size * b] and recv [size * b] of one dtype, on one device, not overlapping.
void all_to_all(const Communicator& comm, const char* op, const Tensor& send, const Tensor& recv);
// One count per rank, non-negative, summing to send.numel() / recv.numel(); what this rank
// sends to itself equals what it receives from itself; one dtype, one device, not overlapping.
void all_to_all_v(const Communicator& comm, const char* op, const Tensor& send,
                  const std::vector<int64_t>& send_counts, const Tensor& recv,
                  const std::vector<int64_t>& recv_counts);
// 0 <= root < size.
void broadcast(const Communicator& comm, const char* op, const Tensor& t, int root);
// send [b] -> recv [size * b] of one dtype, on one device, not overlapping.
void all_gather(const Communicator& comm, const char* op, const Tensor& send, const Tensor& recv);
// color >= 0.
void split(const Communicator& comm, int color);

}  // namespace comm_check

}  // namespace vmoe
