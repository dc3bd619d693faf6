// NcclCommunicator: the Communicator for CUDA tensors, over an NCCL communicator bootstrapped
// through a host communicator (MPI in a job; rank 0's ncclUniqueId is broadcast over it). Host
// tensors (and any tensor not on CUDA) go to that host communicator, so code that exchanges
// small host values (row counts, scalars) works unchanged.
//
// Stream ordering. Every operation is enqueued on the communication stream
// (cuda::communication_stream()) after a cudaStreamWaitEvent on an event recorded on the compute
// stream at the call, so it sees everything the caller's kernels produced before the call. A
// blocking call then makes the compute stream wait for an event recorded after the operation:
// it returns without blocking the host, and later kernels see the results. A non-blocking call
// returns a request whose wait() does that stream wait (no host blocking either), so chunk c + 1
// travels while the kernels of chunk c run; done() queries the event. "Completed" in the
// Communicator contract therefore means "completed in the compute stream's order": a host read
// of a result goes through Tensor::to(kCpu), which the backend orders on the compute stream.
//
// Memory. The caching allocator is not stream-aware: memory freed by host code may be handed
// to the next allocation at once, and the kernels on the compute stream are ordered after
// everything already queued there, but not after work on the communication stream. The rule
// this class relies on: the buffers of every operation are held (by the watchdog's record of
// it) until the GPU finished the operation, whatever the caller does with its tensors, so their
// memory cannot be reused while NCCL reads or writes it. A request also holds its tensors.
//
// Errors and hangs: see NcclWatchdog (an operation running longer than the timeout, 10 s by
// default, or an asynchronous NCCL error aborts the communicator and ends the job with one line
// naming the communicator, the operation and the rank). The communicator is created
// non-blocking (ncclConfig_t::blocking = 0), so that abort interrupts any call.
#pragma once
#include <nccl.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace vmoe {

class NcclWatchdog;
struct NcclOpEvents;
struct NcclHandle;

struct NcclOptions {
  // The CUDA device of this rank's tensors; < 0: local_cuda_device() (local rank modulo the
  // device count). It becomes the process's device (cuda::use_device: one device per process).
  int device = -1;
  // The longest an operation may run on the GPU; <= 0: VMOE_NCCL_TIMEOUT_S, else 10 s.
  double timeout_s = 0;
  // The longest communicator creation or split may take (all ranks must join).
  double init_timeout_s = 120;
  // Reports a failure found by the watchdog, after it aborted the NCCL communicator; empty:
  // abort_job (ends the job). Tests replace it.
  std::function<void(const std::string&)> on_failure;
  // For tests: enqueues work on the communication stream between an operation's start event
  // and its NCCL calls (the watchdog test blocks the stream there to force a timeout).
  std::function<void(cudaStream_t)> before_nccl_calls;
};

// The calls of one communicator come from one thread at a time, in the same order on every
// rank (as for every Communicator). Every call makes the communicator's device the calling
// thread's current one (cuda::use_device).
class NcclCommunicator final : public Communicator {
 public:
  // Collective over `host`: picks this rank's device (options.device), makes the NCCL
  // communicator of host's ranks. Throws NcclError with one line when there is no CUDA device
  // or NCCL fails; name, rank and size are host's.
  explicit NcclCommunicator(std::shared_ptr<Communicator> host, NcclOptions options = {});
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }
  // The CUDA device index of this rank's tensors.
  int device_index() const { return device_; }
  double timeout_s() const;
  // Operations the watchdog has not yet seen finished on the GPU.
  size_t in_flight() const;

  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum) override;
  void all_to_all(const Tensor& send, Tensor& recv) override;
  void all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts, Tensor& recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(Tensor& t, int root) override;
  void all_gather(const Tensor& send, Tensor& recv) override;
  // Host barrier: every rank's earlier NCCL operations finished on its GPU, then the host
  // communicator's barrier.
  void barrier() override;

  CommRequest iall_reduce(Tensor t, ReduceOp op = ReduceOp::sum) override;
  CommRequest iall_to_all(Tensor send, Tensor recv) override;
  CommRequest iall_to_all_v(Tensor send, std::vector<int64_t> send_counts, Tensor recv,
                            std::vector<int64_t> recv_counts) override;
  CommRequest ibroadcast(Tensor t, int root) override;
  CommRequest iall_gather(Tensor send, Tensor recv) override;
  // Stream-ordered: later compute kernels run after every rank reached it.
  CommRequest ibarrier() override;

  // Collective: splits the host communicator and the NCCL communicator (ncclCommSplit).
  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override;

 private:
  struct Adopt {};
  NcclCommunicator(Adopt, std::shared_ptr<Communicator> host, std::shared_ptr<NcclHandle> handle,
                   int device, NcclOptions options);
  // Checks the NCCL rank layout, starts the watchdog and allocates the barrier's scratch word;
  // aborts the NCCL communicator on failure.
  void start();

  // The NCCL calls of one operation, made under the handle's lock.
  using Enqueue = std::function<void(ncclComm_t comm, cudaStream_t stream)>;
  // Argument checks (beyond comm_check's) and the calls of each collective on CUDA tensors.
  Enqueue all_reduce_calls(const char* op, const Tensor& t, ReduceOp reduce) const;
  Enqueue all_to_all_v_calls(const char* op, const Tensor& send,
                             const std::vector<int64_t>& send_counts, const Tensor& recv,
                             const std::vector<int64_t>& recv_counts) const;
  Enqueue broadcast_calls(const char* op, const Tensor& t, int root) const;
  Enqueue all_gather_calls(const char* op, const Tensor& send, const Tensor& recv) const;
  Enqueue barrier_calls() const;

  // Enqueues one operation on the communication stream after the compute stream's work and
  // hands it to the watchdog; `tensors` are kept until the GPU finished it.
  std::shared_ptr<NcclOpEvents> launch(const char* op, std::vector<Tensor> tensors,
                                       const Enqueue& enqueue);
  // launch(), then the compute stream waits for the operation (blocking calls).
  void run(const char* op, std::vector<Tensor> tensors, const Enqueue& enqueue);
  CommRequest request(const char* op, std::vector<Tensor> tensors, const Enqueue& enqueue);
  // Polls ncclCommGetAsyncError until the calls just made on the non-blocking communicator
  // left ncclInProgress; throws NcclError on an error, a watchdog failure or after timeout_s.
  void settle(const std::string& what, double timeout_s) const;
  // Throws the watchdog's failure, if any (nothing is enqueued on an aborted communicator).
  void check_not_failed(const char* op) const;
  // Checks a CUDA tensor of an operation: contiguous, on this communicator's device.
  void check_device_tensor(const char* op, const char* role, const Tensor& t) const;
  std::string where(const char* op) const;

  std::shared_ptr<Communicator> host_;
  NcclOptions options_;
  int device_ = 0;
  std::shared_ptr<NcclHandle> handle_;  // the ncclComm_t, shared with the watchdog's abort
  std::shared_ptr<NcclWatchdog> watchdog_;
  void* barrier_word_ = nullptr;  // [1] f32 on the device: what ibarrier all-reduces
};

// This process's rank on its node as the launcher's environment gives it
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID, PMI_LOCAL_RANK); 0 when none does.
// Throws std::invalid_argument naming the variable when its value is not a number >= 0.
int local_rank_from_environment();

// The CUDA device of this rank: its local rank modulo `device_count`. Throws NcclError naming
// `who` when device_count is 0 (`why`: the runtime's reason, e.g. "no CUDA-capable device is
// detected").
int local_cuda_device(int device_count, const std::string& who, const std::string& why);

// Element offsets of consecutive blocks of `counts` elements (the prefix sums), checking that
// every count is >= 0; for all_to_all_v's ncclSend / ncclRecv pointers.
std::vector<int64_t> block_offsets(const std::vector<int64_t>& counts);

}  // namespace vmoe
