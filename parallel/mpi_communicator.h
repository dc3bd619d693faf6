// MpiCommunicator: the Communicator over an MPI communicator. MPI works on host memory: host
// tensors go to MPI as they are (zero copy); tensors of a device the host cannot read are
// staged through host copies (values copied to the host before the call, results copied back
// after completion; device-aware transports such as NCCL take device pointers instead).
// Blocking collectives call the blocking MPI functions; non-blocking ones post the MPI_I* call
// on the calling thread (so every rank posts its collectives in program order) and hand the
// request to a per-process progress thread, the only thread that tests it. Open MPI has no
// asynchronous progress of its own, so without that thread a large MPI_Ialltoall would not
// move while the caller computes.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace vmoe {

namespace detail {
class MpiProgress;
}  // namespace detail

// The calls of one communicator must come from one thread at a time, in the same order on
// every rank. Needs MPI initialised with MPI_THREAD_MULTIPLE (see MpiRuntime), and must be
// destroyed before MPI_Finalize (it frees its MPI_Comm then; after finalisation it does not).
class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (MPI_Comm_dup, collective over `comm`) and owns the duplicate, with
  // error handler MPI_ERRORS_RETURN. `name` appears in error messages ("world", ...).
  MpiCommunicator(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  // The owned MPI communicator (for wrappers that need it, e.g. parallel HDF5).
  MPI_Comm handle() const { return comm_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) override;
  void all_to_all(const Tensor& send, Tensor& recv) override;
  void all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts, Tensor& recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(Tensor& t, int root) override;
  void all_gather(const Tensor& send, Tensor& recv) override;
  void barrier() override;

  CommRequest iall_reduce(Tensor t, ReduceOp op = ReduceOp::sum) override;
  CommRequest iall_to_all(Tensor send, Tensor recv) override;
  CommRequest iall_to_all_v(Tensor send, std::vector<int64_t> send_counts, Tensor recv,
                            std::vector<int64_t> recv_counts) override;
  CommRequest ibroadcast(Tensor t, int root) override;
  CommRequest iall_gather(Tensor send, Tensor recv) override;
  CommRequest ibarrier() override;

  // MPI_Comm_split: collective over this communicator.
  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override;

 private:
  struct Adopt {};
  // Takes ownership of `owned` (a communicator this process created).
  MpiCommunicator(Adopt, MPI_Comm owned, std::string name);
  // Sets the error handler, rank, size and progress engine of comm_; frees comm_ on failure.
  void adopt();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string name_;
  std::shared_ptr<detail::MpiProgress> progress_;
};

namespace detail {

// "MPI_THREAD_SERIALIZED", ... for a thread support level.
const char* mpi_thread_level_name(int level);

// Lets outstanding non-blocking operations finish, then stops and joins the progress thread.
// Called by MpiRuntime before MPI_Finalize; later non-blocking calls throw MpiError.
void stop_mpi_progress();

}  // namespace detail

}  // namespace vmoe
