// MpiCommunicator and its progress thread (detail::MpiProgress).
#include "parallel/mpi_communicator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <pthread.h>
#include <sys/prctl.h>
#endif

#include "core/ops.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_check.h"

namespace vmoe {

namespace detail {

// What one non-blocking operation needs until it completes: its buffers (Tensor handles share
// the storage), the count/displacement arrays MPI reads until completion, and its outcome.
struct MpiOpState {
  static constexpr int kPending = 0;
  static constexpr int kDone = 1;
  static constexpr int kFailed = 2;

  std::string where;  // "iall_to_all on communicator 'world' (rank 0 of 2)"
  std::vector<Tensor> buffers;
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;

  std::atomic<int> status{kPending};
  std::string error;  // written before status becomes kFailed

  // Called once, by the progress thread.
  void finish(std::string failure) {
    int outcome = kDone;
    if (!failure.empty()) {
      error = where + ": " + failure;
      outcome = kFailed;
    }
    // The operation no longer touches its buffers; the request still holds them if it is alive.
    status.store(outcome, std::memory_order_release);
    status.notify_all();
  }
};

// The per-process progress thread. Requests are posted by the calling thread and handed over
// with submit(); from then on only this thread calls MPI on them (MPI_Testsome) and marks
// their state done. With no requests it sleeps on a condition variable; with requests it
// polls a few times, then backs off with short sleeps so that it does not take a core from
// the compute threads (two ranks on two cores is a normal setup).
class MpiProgress {
 public:
  static std::shared_ptr<MpiProgress> instance() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    std::shared_ptr<MpiProgress> p = registry().lock();
    if (!p) {
      p = std::make_shared<MpiProgress>();
      registry() = p;
    }
    return p;
  }
  static std::shared_ptr<MpiProgress> existing() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    return registry().lock();
  }

  MpiProgress() : thread_([this] { run(); }) {}
  ~MpiProgress() { stop(); }
  MpiProgress(const MpiProgress&) = delete;
  MpiProgress& operator=(const MpiProgress&) = delete;

  // Throws MpiError once stop() was called (MPI is being finalised).
  void check_running(const std::string& where) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) {
      throw MpiError(where + ": the MPI progress thread was stopped (MPI is being finalised)");
    }
  }

  void submit(MPI_Request request, std::shared_ptr<MpiOpState> op) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      incoming_.emplace_back(request, std::move(op));
    }
    cv_.notify_one();
  }

  // Blocks until the progress thread marked `op` complete; never calls MPI.
  void wait(MpiOpState& op) {
    if (op.status.load(std::memory_order_acquire) != MpiOpState::kPending) return;
    waiters_.fetch_add(1, std::memory_order_relaxed);
    while (op.status.load(std::memory_order_acquire) == MpiOpState::kPending) {
      op.status.wait(MpiOpState::kPending, std::memory_order_acquire);
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Lets outstanding requests complete, then joins the thread. Idempotent.
  void stop() {
    std::lock_guard<std::mutex> join_lock(join_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // Polls without sleeping this many times after a submission or completion.
  static constexpr int kSpinPolls = 8;
  // Then sleeps 10, 20, 40, ... microseconds, at most kMaxSleepUs; while a thread is blocked
  // in wait() (its core is then free) it polls without sleeping. A wake-up costs a few
  // microseconds of CPU (about 20 in a VM), so an outstanding request nobody waits for costs
  // the compute threads at most ~10% of a core, and its completion is seen within ~0.2 ms.
  static constexpr int kMinSleepUs = 10;
  static constexpr int kMaxSleepUs = 200;

  static std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
  }
  static std::weak_ptr<MpiProgress>& registry() {
    static std::weak_ptr<MpiProgress> w;
    return w;
  }

  void run() {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "vmoe-mpi-prog");
    // Sleeps of tens of microseconds would otherwise be stretched by the default 50 us slack.
    prctl(PR_SET_TIMERSLACK, 5000UL, 0UL, 0UL, 0UL);
#endif
    std::vector<MPI_Request> requests;
    std::vector<std::shared_ptr<MpiOpState>> ops;
    std::vector<int> indices;
    std::vector<MPI_Status> statuses;
    int idle_polls = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (requests.empty()) cv_.wait(lock, [&] { return stop_ || !incoming_.empty(); });
        if (!incoming_.empty()) idle_polls = 0;
        for (auto& [request, op] : incoming_) {
          requests.push_back(request);
          ops.push_back(std::move(op));
        }
        incoming_.clear();
        if (requests.empty()) {
          if (stop_) return;
          continue;
        }
      }

      const int n = int(requests.size());
      indices.resize(size_t(n));
      statuses.resize(size_t(n));
      int completed = 0;
      const int rc = MPI_Testsome(n, requests.data(), &completed, indices.data(), statuses.data());
      if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
        // Cannot tell which request failed: fail them all (the job aborts on the error).
        const std::string text = "MPI_Testsome failed: " + mpi_error_text(rc);
        for (auto& op : ops)
          op->finish(text);
        requests.clear();
        ops.clear();
        continue;
      }
      if (completed == MPI_UNDEFINED || completed == 0) {
        backoff(++idle_polls);
        continue;
      }
      for (int k = 0; k < completed; ++k) {
        const size_t i = size_t(indices[size_t(k)]);
        std::string failure;
        if (rc == MPI_ERR_IN_STATUS && statuses[size_t(k)].MPI_ERROR != MPI_SUCCESS) {
          failure = "the operation failed: " + mpi_error_text(statuses[size_t(k)].MPI_ERROR);
        }
        ops[i]->finish(std::move(failure));
        ops[i].reset();
        requests[i] = MPI_REQUEST_NULL;
      }
      // Drop the completed entries, keeping the others in posting order.
      size_t kept = 0;
      for (size_t i = 0; i < requests.size(); ++i) {
        if (ops[i]) {
          requests[kept] = requests[i];
          ops[kept] = std::move(ops[i]);
          ++kept;
        }
      }
      requests.resize(kept);
      ops.resize(kept);
      idle_polls = 0;
    }
  }

  void backoff(int idle_polls) {
    if (idle_polls <= kSpinPolls) return;
    const int doublings = std::min(idle_polls - kSpinPolls - 1, 8);
    if (waiters_.load(std::memory_order_relaxed) > 0) {
      // A thread is blocked in wait(): its core is free, so poll without sleeping.
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::min(kMinSleepUs << doublings, kMaxSleepUs)));
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<MPI_Request, std::shared_ptr<MpiOpState>>> incoming_;
  bool stop_ = false;
  std::atomic<int> waiters_{0};
  std::mutex join_mutex_;
  std::thread thread_;  // last: starts after the members above exist
};

const char* mpi_thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
    default:
      return "an unknown thread level";
  }
}

void stop_mpi_progress() {
  if (std::shared_ptr<MpiProgress> p = MpiProgress::existing()) p->stop();
}

}  // namespace detail

namespace {

using detail::MpiOpState;
using detail::MpiProgress;

// MPI reads and writes host memory. A tensor whose memory the host can read is handed to MPI
// as it is (zero copy); any other tensor is staged through a host copy: its values are copied
// to the host before the call (Tensor::cpu()), and what MPI wrote into a host buffer is copied
// back to the device tensor after completion (at once for a blocking call, in wait() or
// done() for a non-blocking one, on the calling thread). Device-aware transports (NCCL, a
// later issue) take the device pointers (Tensor::device_data()) instead and stage nothing.
class Staging {
 public:
  // Host memory holding t's values: t itself when the host can read it.
  Tensor input(const Tensor& t) { return t.device().host_readable() ? t : t.cpu(); }
  // Host memory MPI writes t's result into: t itself when the host can read it, else a host
  // buffer (holding t's values when `with_values`, e.g. for an in-place reduction) that
  // finish() copies back into t.
  Tensor output(const Tensor& t, bool with_values) {
    if (t.device().host_readable()) return t;
    Tensor host = with_values ? t.cpu() : Tensor::empty(t.shape(), t.dtype(), kCpu);
    back_.emplace_back(t, host);
    return host;
  }
  // Copies the host results back into their device tensors (once).
  void finish() {
    std::vector<std::pair<Tensor, Tensor>> back = std::move(back_);
    back_.clear();
    for (auto& [device_tensor, host] : back) {
      if (host.numel() == 0) continue;
      Tensor dst = device_tensor.detach();
      copy_(dst, host.to(dst.device()));
    }
  }

 private:
  std::vector<std::pair<Tensor, Tensor>> back_;  // (device tensor, host buffer)
};

// The request of a non-blocking MpiCommunicator call: waits for the progress thread's signal,
// then copies staged results back to their device tensors.
class MpiPendingOp final : public PendingOp {
 public:
  MpiPendingOp(std::shared_ptr<MpiProgress> progress, std::shared_ptr<MpiOpState> state,
               Staging staging)
      : progress_(std::move(progress)), state_(std::move(state)), staging_(std::move(staging)) {}

  void wait() override {
    progress_->wait(*state_);
    if (state_->status.load(std::memory_order_acquire) == MpiOpState::kFailed) {
      throw MpiError(state_->error);
    }
    staging_.finish();
  }
  bool done() override {
    const int status = state_->status.load(std::memory_order_acquire);
    if (status == MpiOpState::kPending) return false;
    if (status == MpiOpState::kDone) staging_.finish();
    return true;
  }

 private:
  std::shared_ptr<MpiProgress> progress_;
  std::shared_ptr<MpiOpState> state_;
  Staging staging_;
};

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u8:
      return MPI_UINT8_T;
    case DType::bf16:
      return MPI_UINT16_T;  // moved as raw 2-byte values; never reduced
  }
  throw std::invalid_argument("no MPI datatype for dtype " + std::to_string(int(t)));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  throw std::invalid_argument("unknown ReduceOp " + std::to_string(int(op)));
}

// MPI counts (and displacements) are ints.
int fit_int(const Communicator& comm, const char* op, const char* what, int64_t value) {
  if (value > INT_MAX) {
    throw std::invalid_argument(
        comm_check::where(comm, op) + ": " + what + " is " + std::to_string(value) +
        " elements; MPI counts must fit in int (at most " + std::to_string(INT_MAX) + ")");
  }
  return int(value);
}

// Counts and displacements (prefix sums) as ints.
void int_counts(const Communicator& comm, const char* op, const char* role,
                const std::vector<int64_t>& counts, int64_t total, std::vector<int>& out_counts,
                std::vector<int>& out_displs) {
  fit_int(comm, op, role, total);  // every count and displacement is <= total
  out_counts.resize(counts.size());
  out_displs.resize(counts.size());
  int displ = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    out_counts[i] = int(counts[i]);
    out_displs[i] = displ;
    displ += out_counts[i];
  }
}

void require_mpi(const std::string& name) {
  int initialized = 0;
  int finalized = 0;
  VMOE_MPI_CHECK(MPI_Initialized(&initialized));
  VMOE_MPI_CHECK(MPI_Finalized(&finalized));
  if (!initialized || finalized) {
    throw MpiError("MpiCommunicator '" + name + "': MPI is " +
                   (finalized ? "already finalised" : "not initialised") +
                   " (create MPI communicators while an MpiRuntime is alive)");
  }
  int provided = MPI_THREAD_SINGLE;
  VMOE_MPI_CHECK(MPI_Query_thread(&provided));
  if (provided < MPI_THREAD_MULTIPLE) {
    throw MpiError("MpiCommunicator '" + name +
                   "': needs MPI initialised with MPI_THREAD_MULTIPLE, but it provides " +
                   detail::mpi_thread_level_name(provided));
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name) : name_(std::move(name)) {
  require_mpi(name_);
  VMOE_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  adopt();
}

MpiCommunicator::MpiCommunicator(Adopt, MPI_Comm owned, std::string name)
    : comm_(owned), name_(std::move(name)) {
  adopt();
}

void MpiCommunicator::adopt() {
  try {
    VMOE_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    VMOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    VMOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    progress_ = MpiProgress::instance();
  } catch (...) {
    MPI_Comm_free(&comm_);
    throw;
  }
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ == MPI_COMM_NULL) return;
  int finalized = 1;
  MPI_Finalized(&finalized);
  // Pending operations on the communicator may still complete: MPI defers the actual free.
  if (!finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  comm_check::all_reduce(*this, "all_reduce", t);
  const int n = fit_int(*this, "all_reduce", "tensor", t.numel());
  Staging staging;
  const Tensor host = staging.output(t, true);
  VMOE_MPI_CHECK(
      MPI_Allreduce(MPI_IN_PLACE, host.raw_data(), n, mpi_type(t.dtype()), mpi_op(op), comm_));
  staging.finish();
}

void MpiCommunicator::all_to_all(const Tensor& send, Tensor& recv) {
  comm_check::all_to_all(*this, "all_to_all", send, recv);
  const int block = fit_int(*this, "all_to_all", "the block", send.numel() / size_);
  const MPI_Datatype type = mpi_type(send.dtype());
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  VMOE_MPI_CHECK(MPI_Alltoall(s.raw_data(), block, type, r.raw_data(), block, type, comm_));
  staging.finish();
}

void MpiCommunicator::all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts,
                                   Tensor& recv, const std::vector<int64_t>& recv_counts) {
  comm_check::all_to_all_v(*this, "all_to_all_v", send, send_counts, recv, recv_counts);
  std::vector<int> sc, sd, rc, rd;
  int_counts(*this, "all_to_all_v", "send", send_counts, send.numel(), sc, sd);
  int_counts(*this, "all_to_all_v", "recv", recv_counts, recv.numel(), rc, rd);
  const MPI_Datatype type = mpi_type(send.dtype());
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  VMOE_MPI_CHECK(MPI_Alltoallv(s.raw_data(), sc.data(), sd.data(), type, r.raw_data(), rc.data(),
                               rd.data(), type, comm_));
  staging.finish();
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
  comm_check::broadcast(*this, "broadcast", t, root);
  const int n = fit_int(*this, "broadcast", "tensor", t.numel());
  Staging staging;
  const Tensor host = staging.output(t, rank_ == root);
  VMOE_MPI_CHECK(MPI_Bcast(host.raw_data(), n, mpi_type(t.dtype()), root, comm_));
  staging.finish();
}

void MpiCommunicator::all_gather(const Tensor& send, Tensor& recv) {
  comm_check::all_gather(*this, "all_gather", send, recv);
  const int n = fit_int(*this, "all_gather", "send", send.numel());
  fit_int(*this, "all_gather", "recv", recv.numel());  // MPI computes displacements in int
  const MPI_Datatype type = mpi_type(send.dtype());
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  VMOE_MPI_CHECK(MPI_Allgather(s.raw_data(), n, type, r.raw_data(), n, type, comm_));
  staging.finish();
}

void MpiCommunicator::barrier() {
  VMOE_MPI_CHECK(MPI_Barrier(comm_));
}

namespace {

// Posts one non-blocking call on this thread (`post` fills the request) and hands the
// request to the progress thread. `staging` holds the device tensors whose host buffers (in
// state->buffers) MPI writes.
template <class Post>
CommRequest start(const std::shared_ptr<MpiProgress>& progress, std::shared_ptr<MpiOpState> state,
                  Staging staging, Post&& post) {
  progress->check_running(state->where);
  MPI_Request request = MPI_REQUEST_NULL;
  post(*state, &request);
  progress->submit(request, state);
  return CommRequest(
      std::make_unique<MpiPendingOp>(progress, std::move(state), std::move(staging)));
}

// `buffers`: the host memory MPI uses until completion.
std::shared_ptr<MpiOpState> new_state(const Communicator& comm, const char* op,
                                      std::vector<Tensor> buffers) {
  auto state = std::make_shared<MpiOpState>();
  state->where = comm_check::where(comm, op);
  state->buffers = std::move(buffers);
  return state;
}

}  // namespace

CommRequest MpiCommunicator::iall_reduce(Tensor t, ReduceOp op) {
  comm_check::all_reduce(*this, "iall_reduce", t);
  const int n = fit_int(*this, "iall_reduce", "tensor", t.numel());
  const MPI_Comm comm = comm_;
  Staging staging;
  const Tensor host = staging.output(t, true);
  return start(progress_, new_state(*this, "iall_reduce", {host}), std::move(staging),
               [&](MpiOpState&, MPI_Request* request) {
                 VMOE_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, host.raw_data(), n,
                                               mpi_type(t.dtype()), mpi_op(op), comm, request));
               });
}

CommRequest MpiCommunicator::iall_to_all(Tensor send, Tensor recv) {
  comm_check::all_to_all(*this, "iall_to_all", send, recv);
  const int block = fit_int(*this, "iall_to_all", "the block", send.numel() / size_);
  const MPI_Datatype type = mpi_type(send.dtype());
  const MPI_Comm comm = comm_;
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  return start(progress_, new_state(*this, "iall_to_all", {s, r}), std::move(staging),
               [&](MpiOpState&, MPI_Request* request) {
                 VMOE_MPI_CHECK(MPI_Ialltoall(s.raw_data(), block, type, r.raw_data(), block, type,
                                              comm, request));
               });
}

CommRequest MpiCommunicator::iall_to_all_v(Tensor send, std::vector<int64_t> send_counts,
                                           Tensor recv, std::vector<int64_t> recv_counts) {
  comm_check::all_to_all_v(*this, "iall_to_all_v", send, send_counts, recv, recv_counts);
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  auto state = new_state(*this, "iall_to_all_v", {s, r});
  // The count and displacement arrays live in the state: MPI reads them until completion.
  int_counts(*this, "iall_to_all_v", "send", send_counts, send.numel(), state->send_counts,
             state->send_displs);
  int_counts(*this, "iall_to_all_v", "recv", recv_counts, recv.numel(), state->recv_counts,
             state->recv_displs);
  const MPI_Datatype type = mpi_type(send.dtype());
  const MPI_Comm comm = comm_;
  return start(
      progress_, std::move(state), std::move(staging), [&](MpiOpState& st, MPI_Request* request) {
        VMOE_MPI_CHECK(MPI_Ialltoallv(s.raw_data(), st.send_counts.data(), st.send_displs.data(),
                                      type, r.raw_data(), st.recv_counts.data(),
                                      st.recv_displs.data(), type, comm, request));
      });
}

CommRequest MpiCommunicator::ibroadcast(Tensor t, int root) {
  comm_check::broadcast(*this, "ibroadcast", t, root);
  const int n = fit_int(*this, "ibroadcast", "tensor", t.numel());
  const MPI_Comm comm = comm_;
  Staging staging;
  const Tensor host = staging.output(t, rank_ == root);
  return start(
      progress_, new_state(*this, "ibroadcast", {host}), std::move(staging),
      [&](MpiOpState&, MPI_Request* request) {
        VMOE_MPI_CHECK(MPI_Ibcast(host.raw_data(), n, mpi_type(t.dtype()), root, comm, request));
      });
}

CommRequest MpiCommunicator::iall_gather(Tensor send, Tensor recv) {
  comm_check::all_gather(*this, "iall_gather", send, recv);
  const int n = fit_int(*this, "iall_gather", "send", send.numel());
  fit_int(*this, "iall_gather", "recv", recv.numel());
  const MPI_Datatype type = mpi_type(send.dtype());
  const MPI_Comm comm = comm_;
  Staging staging;
  const Tensor s = staging.input(send), r = staging.output(recv, false);
  return start(
      progress_, new_state(*this, "iall_gather", {s, r}), std::move(staging),
      [&](MpiOpState&, MPI_Request* request) {
        VMOE_MPI_CHECK(MPI_Iallgather(s.raw_data(), n, type, r.raw_data(), n, type, comm, request));
      });
}

CommRequest MpiCommunicator::ibarrier() {
  const MPI_Comm comm = comm_;
  return start(
      progress_, new_state(*this, "ibarrier", {}), Staging(),
      [&](MpiOpState&, MPI_Request* request) { VMOE_MPI_CHECK(MPI_Ibarrier(comm, request)); });
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, std::string name) const {
  comm_check::split(*this, color);
  MPI_Comm out = MPI_COMM_NULL;
  VMOE_MPI_CHECK(MPI_Comm_split(comm_, color, key, &out));
  return std::unique_ptr<Communicator>(new MpiCommunicator(Adopt{}, out, std::move(name)));
}

}  // namespace vmoe
