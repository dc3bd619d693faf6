// NcclCommunicator: bootstrap, stream-ordered launch of the NCCL collectives, requests, split.
#include "parallel/nccl_communicator.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/cuda/streams.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_runtime.h"
#include "parallel/nccl_check.h"
#include "parallel/nccl_watchdog.h"

namespace vmoe {

// The two events of one operation, both on the communication stream: `start` after the wait
// for the compute stream (the operation may begin), `done` after the NCCL calls.
struct NcclOpEvents {
  cudaEvent_t start = nullptr;
  cudaEvent_t done = nullptr;
  NcclOpEvents() {
    VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&start, cudaEventDisableTiming));
    const cudaError_t rc = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
    if (rc != cudaSuccess) cudaEventDestroy(start);
    VMOE_CUDA_CHECK(rc);
  }
  ~NcclOpEvents() {
    // Safe while still pending: CUDA releases an event once the device has passed it.
    cudaEventDestroy(start);
    cudaEventDestroy(done);
  }
  NcclOpEvents(const NcclOpEvents&) = delete;
  NcclOpEvents& operator=(const NcclOpEvents&) = delete;
};

namespace {

bool event_complete(cudaEvent_t event) {
  const cudaError_t rc = cudaEventQuery(event);
  if (rc == cudaSuccess) return true;
  if (rc == cudaErrorNotReady) return false;
  VMOE_CUDA_CHECK(rc);
  return false;
}

// Opens an NCCL group around `calls` and closes it even when one of them throws (the error
// ends the job, but the thread's group state stays consistent meanwhile).
template <class Calls>
void grouped(Calls&& calls) {
  VMOE_NCCL_CHECK(ncclGroupStart());
  try {
    calls();
  } catch (...) {
    ncclGroupEnd();
    throw;
  }
  VMOE_NCCL_CHECK_STARTED(ncclGroupEnd());
}

}  // namespace

// The NCCL communicator handle shared with the watchdog: every call on it holds `mutex` (calls
// on a non-blocking communicator return at once), so that the watchdog's abort never frees it
// under a call, and nothing calls it after the abort.
struct NcclHandle {
  ncclComm_t comm = nullptr;
  std::mutex mutex;
  bool aborted = false;

  // fn(comm) under the lock; throws NcclError naming `where` once the communicator was aborted.
  template <class Fn>
  auto with(const std::string& where, Fn&& fn) {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted) {
      throw NcclError(ncclInvalidUsage,
                      where + ": the NCCL communicator was aborted after an earlier failure");
    }
    return fn(comm);
  }
  void abort() {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted || comm == nullptr) return;
    aborted = true;
    ncclCommAbort(comm);
  }
  // A communicator nobody finalised (an error between its creation and its owner's) is
  // aborted: the handle owns it. A destroyed one is marked aborted and left alone.
  ~NcclHandle() { abort(); }
};

namespace {

// Polls a non-blocking communicator until its last calls left ncclInProgress. `failure`
// returns the watchdog's failure text ("" while none).
void settle_handle(NcclHandle& handle, const std::string& what, double timeout_s,
                   const std::function<std::string()>& failure) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int polls = 0;; ++polls) {
    const ncclResult_t state = handle.with(what, [](ncclComm_t comm) {
      ncclResult_t s = ncclInProgress;
      VMOE_NCCL_CHECK(ncclCommGetAsyncError(comm, &s));
      return s;
    });
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      throw NcclError(state, what + ": NCCL failed: " + ncclGetErrorString(state) + ": " +
                                 ncclGetLastError(nullptr));
    }
    if (failure) {
      const std::string f = failure();
      if (!f.empty()) throw NcclError(ncclRemoteError, f);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw NcclError(ncclInProgress,
                      what + ": NCCL did not finish within " + std::to_string(timeout_s) + " s");
    }
    // Enqueueing usually settles within microseconds; creation takes up to seconds.
    if (polls < 100) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

ncclConfig_t non_blocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// The request of a non-blocking operation: wait() orders the compute stream after it.
class NcclPendingOp final : public PendingOp {
 public:
  NcclPendingOp(std::shared_ptr<NcclWatchdog> watchdog, std::shared_ptr<NcclOpEvents> events,
                int device, std::vector<Tensor> tensors)
      : watchdog_(std::move(watchdog)),
        events_(std::move(events)),
        device_(device),
        tensors_(std::move(tensors)) {}

  void wait() override {
    throw_if_failed();
    cuda::use_device(device_);
    VMOE_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(), events_->done, 0));
  }
  bool done() override {
    // A failed operation counts as done: wait() then throws its error.
    return !watchdog_->failure().empty() || event_complete(events_->done);
  }

 private:
  void throw_if_failed() const {
    const std::string failure = watchdog_->failure();
    if (!failure.empty()) throw NcclError(ncclRemoteError, failure);
  }

  std::shared_ptr<NcclWatchdog> watchdog_;
  std::shared_ptr<NcclOpEvents> events_;
  int device_;
  std::vector<Tensor> tensors_;  // the caller's view of the buffers, until the request ends
};

// A CUDA event recorded on `stream`, destroyed with this object (for the compute-stream side
// of a launch).
class RecordedEvent {
 public:
  explicit RecordedEvent(cudaStream_t stream) {
    VMOE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    const cudaError_t rc = cudaEventRecord(event_, stream);
    if (rc != cudaSuccess) cudaEventDestroy(event_);
    VMOE_CUDA_CHECK(rc);
  }
  ~RecordedEvent() { cudaEventDestroy(event_); }
  RecordedEvent(const RecordedEvent&) = delete;
  RecordedEvent& operator=(const RecordedEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

bool on_cuda(const Tensor& t) {
  return t.device().type == DeviceType::cuda;
}

// all_to_all as all_to_all_v: `ranks` blocks of numel / ranks elements.
std::vector<int64_t> equal_blocks(const Tensor& t, int ranks) {
  return std::vector<int64_t>(size_t(ranks), t.numel() / ranks);
}

}  // namespace

int local_rank_from_environment() {
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"}) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') continue;
    char* end = nullptr;
    const long rank = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || rank < 0 || rank > 1 << 20) {
      throw std::invalid_argument(std::string(name) + " must be a local rank >= 0, got '" + value +
                                  "'");
    }
    return int(rank);
  }
  return 0;
}

int local_cuda_device(int device_count, const std::string& who, const std::string& why) {
  if (device_count <= 0) {
    throw NcclError(ncclSystemError, who + ": no CUDA device (" + why +
                                         "); NCCL communicators need one GPU per rank");
  }
  return local_rank_from_environment() % device_count;
}

std::vector<int64_t> block_offsets(const std::vector<int64_t>& counts) {
  std::vector<int64_t> offsets(counts.size());
  int64_t at = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < 0) {
      throw std::invalid_argument("block count " + std::to_string(i) + " must be >= 0, got " +
                                  std::to_string(counts[i]));
    }
    offsets[i] = at;
    at += counts[i];
  }
  return offsets;
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<Communicator> host, NcclOptions options)
    : host_(std::move(host)), options_(std::move(options)) {
  if (!host_) {
    throw std::invalid_argument(
        "NcclCommunicator needs a host communicator to bootstrap over, got none");
  }
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  std::string why = "no CUDA-capable device is visible";
  if (rc != cudaSuccess) {
    cudaGetLastError();  // clear: the process may go on without CUDA
    why =
        std::string("cudaGetDeviceCount: ") + cudaGetErrorName(rc) + ": " + cudaGetErrorString(rc);
    count = 0;
  }
  const std::string who = "NcclCommunicator " + where("create");
  device_ = local_cuda_device(count, who, why);
  if (options_.device >= 0) {
    if (options_.device >= count) {
      throw NcclError(ncclInvalidArgument,
                      who + ": device cuda:" + std::to_string(options_.device) + " requested, " +
                          "but this machine has " + std::to_string(count) + " CUDA device(s)");
    }
    device_ = options_.device;
  }
  cuda::use_device(device_);

  // Rank 0 makes the id; the host communicator carries it to the others.
  ncclUniqueId id{};
  if (rank() == 0) VMOE_NCCL_CHECK(ncclGetUniqueId(&id));
  Tensor id_bytes = Tensor::empty({int64_t(sizeof(id))}, DType::u8, kCpu);
  std::memcpy(id_bytes.raw_data(), &id, sizeof(id));
  host_->broadcast(id_bytes, 0);
  std::memcpy(&id, id_bytes.raw_data(), sizeof(id));

  ncclConfig_t config = non_blocking_config();
  handle_ = std::make_shared<NcclHandle>();
  VMOE_NCCL_CHECK_STARTED(ncclCommInitRankConfig(&handle_->comm, size(), id, rank(), &config));
  try {
    settle_handle(*handle_, where("ncclCommInitRankConfig"), options_.init_timeout_s, {});
  } catch (...) {
    handle_->abort();
    throw;
  }
  start();
}

NcclCommunicator::NcclCommunicator(Adopt, std::shared_ptr<Communicator> host,
                                   std::shared_ptr<NcclHandle> handle, int device,
                                   NcclOptions options)
    : host_(std::move(host)),
      options_(std::move(options)),
      device_(device),
      handle_(std::move(handle)) {
  start();
}

void NcclCommunicator::start() {
  try {
    int nccl_rank = -1, nccl_size = -1;
    handle_->with(where("start"), [&](ncclComm_t comm) {
      VMOE_NCCL_CHECK(ncclCommUserRank(comm, &nccl_rank));
      VMOE_NCCL_CHECK(ncclCommCount(comm, &nccl_size));
      return 0;
    });
    if (nccl_rank != rank() || nccl_size != size()) {
      throw NcclError(ncclInternalError, where("start") + ": the NCCL communicator has rank " +
                                             std::to_string(nccl_rank) + " of " +
                                             std::to_string(nccl_size) +
                                             ", expected the host communicator's layout");
    }
    const double timeout = options_.timeout_s > 0
                               ? options_.timeout_s
                               : nccl_timeout_seconds(std::getenv("VMOE_NCCL_TIMEOUT_S"));
    VMOE_CUDA_CHECK(cudaMalloc(&barrier_word_, sizeof(float)));
    VMOE_CUDA_CHECK(cudaMemset(barrier_word_, 0, sizeof(float)));

    NcclWatchdog::Hooks hooks;
    const int device = device_;
    hooks.thread_start = [device] { cuda::use_device(device); };
    std::weak_ptr<NcclHandle> weak = handle_;
    hooks.async_error = [weak]() -> ncclResult_t {
      std::shared_ptr<NcclHandle> h = weak.lock();
      if (!h) return ncclSuccess;
      std::lock_guard<std::mutex> lock(h->mutex);
      if (h->aborted) return ncclSuccess;
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(h->comm, &state);
      return rc != ncclSuccess ? rc : state;
    };
    hooks.abort = [weak] {
      if (std::shared_ptr<NcclHandle> h = weak.lock()) h->abort();
    };
    hooks.on_failure = options_.on_failure;
    if (!hooks.on_failure) hooks.on_failure = [](const std::string& m) { abort_job(m); };
    const std::string who = "NCCL communicator '" + name() + "' (rank " + std::to_string(rank()) +
                            " of " + std::to_string(size()) + ")";
    watchdog_ = std::make_shared<NcclWatchdog>(who, timeout, std::move(hooks));
  } catch (...) {
    if (barrier_word_ != nullptr) cudaFree(barrier_word_);
    barrier_word_ = nullptr;
    handle_->abort();
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  try {
    // No abort can race the clean-up once the watchdog is stopped.
    if (watchdog_) watchdog_->stop();
    if (handle_ && !handle_->aborted && handle_->comm != nullptr) {
      // Finalize flushes the operations still queued; then the communicator can be freed.
      try {
        handle_->with(where("ncclCommFinalize"), [](ncclComm_t comm) {
          VMOE_NCCL_CHECK_STARTED(ncclCommFinalize(comm));
          return 0;
        });
        settle_handle(*handle_, where("ncclCommFinalize"),
                      watchdog_ ? watchdog_->timeout_s() : 10.0, {});
        std::lock_guard<std::mutex> lock(handle_->mutex);
        ncclCommDestroy(handle_->comm);
        handle_->aborted = true;  // freed: nothing may call it again
      } catch (...) {
        handle_->abort();
      }
    }
    if (barrier_word_ != nullptr) cudaFree(barrier_word_);
  } catch (...) {
    // A destructor reports nothing; a failure here follows an earlier, reported one.
  }
}

std::string NcclCommunicator::where(const char* op) const {
  return comm_check::where(*this, op);
}

double NcclCommunicator::timeout_s() const {
  return watchdog_->timeout_s();
}

size_t NcclCommunicator::in_flight() const {
  return watchdog_->in_flight();
}

void NcclCommunicator::check_not_failed(const char* op) const {
  const std::string failure = watchdog_->failure();
  if (!failure.empty()) {
    throw NcclError(ncclRemoteError, where(op) + ": an earlier NCCL operation failed: " + failure);
  }
}

void NcclCommunicator::check_device_tensor(const char* op, const char* role,
                                           const Tensor& t) const {
  if (!on_cuda(t) || t.device().index != device_ || !t.is_contiguous()) {
    throw std::invalid_argument(where(op) + ": " + role + " " + t.desc() + " on " +
                                t.device().str() + " must be a contiguous tensor on cuda:" +
                                std::to_string(device_) + " (this rank's NCCL device)");
  }
}

void NcclCommunicator::settle(const std::string& what, double timeout_s) const {
  std::shared_ptr<NcclWatchdog> dog = watchdog_;
  settle_handle(*handle_, what, timeout_s, [dog] { return dog->failure(); });
}

std::shared_ptr<NcclOpEvents> NcclCommunicator::launch(const char* op, std::vector<Tensor> tensors,
                                                       const Enqueue& enqueue) {
  check_not_failed(op);
  cuda::use_device(device_);
  const cudaStream_t compute = cuda::compute_stream();
  const cudaStream_t comm_stream = cuda::communication_stream();
  auto events = std::make_shared<NcclOpEvents>();
  {
    // The operation starts after everything the caller queued on the compute stream.
    const RecordedEvent produced(compute);
    VMOE_CUDA_CHECK(cudaStreamWaitEvent(comm_stream, produced.get(), 0));
  }
  VMOE_CUDA_CHECK(cudaEventRecord(events->start, comm_stream));
  if (options_.before_nccl_calls) options_.before_nccl_calls(comm_stream);
  const std::string what = where(op);
  handle_->with(what, [&](ncclComm_t comm) {
    enqueue(comm, comm_stream);
    return 0;
  });
  settle(what, watchdog_->timeout_s());
  VMOE_CUDA_CHECK(cudaEventRecord(events->done, comm_stream));

  WatchedOp watched;
  watched.name = op;
  watched.started = [events] { return event_complete(events->start); };
  watched.finished = [events] { return event_complete(events->done); };
  watched.keep_alive = std::move(tensors);
  watchdog_->watch(std::move(watched));
  return events;
}

void NcclCommunicator::run(const char* op, std::vector<Tensor> tensors, const Enqueue& enqueue) {
  const std::shared_ptr<NcclOpEvents> events = launch(op, std::move(tensors), enqueue);
  VMOE_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(), events->done, 0));
}

CommRequest NcclCommunicator::request(const char* op, std::vector<Tensor> tensors,
                                      const Enqueue& enqueue) {
  std::shared_ptr<NcclOpEvents> events = launch(op, tensors, enqueue);
  return CommRequest(
      std::make_unique<NcclPendingOp>(watchdog_, std::move(events), device_, std::move(tensors)));
}

// Each collective: the shared argument checks; host tensors go to the host communicator; CUDA
// tensors become an Enqueue of NCCL calls on the communication stream.

NcclCommunicator::Enqueue NcclCommunicator::all_reduce_calls(const char* op, const Tensor& t,
                                                             ReduceOp reduce) const {
  check_device_tensor(op, "tensor", t);
  void* data = t.device_raw();
  const size_t n = size_t(t.numel());
  const ncclDataType_t type = nccl_data_type(t.dtype());
  const ncclRedOp_t red = nccl_reduce_op(reduce);
  return [=](ncclComm_t comm, cudaStream_t stream) {
    VMOE_NCCL_CHECK_STARTED(ncclAllReduce(data, data, n, type, red, comm, stream));
  };
}

NcclCommunicator::Enqueue NcclCommunicator::all_to_all_v_calls(
    const char* op, const Tensor& send, const std::vector<int64_t>& send_counts, const Tensor& recv,
    const std::vector<int64_t>& recv_counts) const {
  check_device_tensor(op, "send", send);
  check_device_tensor(op, "recv", recv);
  const std::vector<int64_t> send_at = block_offsets(send_counts);
  const std::vector<int64_t> recv_at = block_offsets(recv_counts);
  const size_t elem = dtype_size(send.dtype());
  const ncclDataType_t type = nccl_data_type(send.dtype());
  const char* s = static_cast<const char*>(send.device_raw());
  char* r = static_cast<char*>(recv.device_raw());
  const int peers = size();
  return [=](ncclComm_t comm, cudaStream_t stream) {
    grouped([&] {
      for (int p = 0; p < peers; ++p) {
        const size_t i = size_t(p);
        // Zero counts are skipped on both sides: what p sends me is what I expect from p.
        if (send_counts[i] > 0) {
          VMOE_NCCL_CHECK_STARTED(ncclSend(s + size_t(send_at[i]) * elem, size_t(send_counts[i]),
                                           type, p, comm, stream));
        }
        if (recv_counts[i] > 0) {
          VMOE_NCCL_CHECK_STARTED(ncclRecv(r + size_t(recv_at[i]) * elem, size_t(recv_counts[i]),
                                           type, p, comm, stream));
        }
      }
    });
  };
}

NcclCommunicator::Enqueue NcclCommunicator::broadcast_calls(const char* op, const Tensor& t,
                                                            int root) const {
  check_device_tensor(op, "tensor", t);
  void* data = t.device_raw();
  const size_t n = size_t(t.numel());
  const ncclDataType_t type = nccl_data_type(t.dtype());
  return [=](ncclComm_t comm, cudaStream_t stream) {
    VMOE_NCCL_CHECK_STARTED(ncclBroadcast(data, data, n, type, root, comm, stream));
  };
}

NcclCommunicator::Enqueue NcclCommunicator::all_gather_calls(const char* op, const Tensor& send,
                                                             const Tensor& recv) const {
  check_device_tensor(op, "send", send);
  check_device_tensor(op, "recv", recv);
  const void* s = send.device_raw();
  void* r = recv.device_raw();
  const size_t n = size_t(send.numel());
  const ncclDataType_t type = nccl_data_type(send.dtype());
  return [=](ncclComm_t comm, cudaStream_t stream) {
    VMOE_NCCL_CHECK_STARTED(ncclAllGather(s, r, n, type, comm, stream));
  };
}

NcclCommunicator::Enqueue NcclCommunicator::barrier_calls() const {
  void* word = barrier_word_;
  return [=](ncclComm_t comm, cudaStream_t stream) {
    VMOE_NCCL_CHECK_STARTED(ncclAllReduce(word, word, 1, ncclFloat32, ncclMax, comm, stream));
  };
}

void NcclCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  if (!on_cuda(t)) return host_->all_reduce(t, op);
  comm_check::all_reduce(*this, "all_reduce", t);
  if (t.numel() == 0) return;
  run("all_reduce", {t}, all_reduce_calls("all_reduce", t, op));
}

void NcclCommunicator::all_to_all(const Tensor& send, Tensor& recv) {
  if (!on_cuda(send) && !on_cuda(recv)) return host_->all_to_all(send, recv);
  comm_check::all_to_all(*this, "all_to_all", send, recv);
  const std::vector<int64_t> counts = equal_blocks(send, size());
  run("all_to_all", {send, recv}, all_to_all_v_calls("all_to_all", send, counts, recv, counts));
}

void NcclCommunicator::all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_counts,
                                    Tensor& recv, const std::vector<int64_t>& recv_counts) {
  if (!on_cuda(send) && !on_cuda(recv))
    return host_->all_to_all_v(send, send_counts, recv, recv_counts);
  comm_check::all_to_all_v(*this, "all_to_all_v", send, send_counts, recv, recv_counts);
  run("all_to_all_v", {send, recv},
      all_to_all_v_calls("all_to_all_v", send, send_counts, recv, recv_counts));
}

void NcclCommunicator::broadcast(Tensor& t, int root) {
  if (!on_cuda(t)) return host_->broadcast(t, root);
  comm_check::broadcast(*this, "broadcast", t, root);
  if (t.numel() == 0) return;
  run("broadcast", {t}, broadcast_calls("broadcast", t, root));
}

void NcclCommunicator::all_gather(const Tensor& send, Tensor& recv) {
  if (!on_cuda(send) && !on_cuda(recv)) return host_->all_gather(send, recv);
  comm_check::all_gather(*this, "all_gather", send, recv);
  if (send.numel() == 0) return;
  run("all_gather", {send, recv}, all_gather_calls("all_gather", send, recv));
}

void NcclCommunicator::barrier() {
  // Every rank's earlier NCCL operations are done on its GPU (the host waits, polling, so
  // that a watchdog failure is reported instead of a hang), then the host barrier.
  const std::shared_ptr<NcclOpEvents> events = launch("barrier", {}, barrier_calls());
  while (!event_complete(events->done)) {
    check_not_failed("barrier");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  host_->barrier();
}

CommRequest NcclCommunicator::iall_reduce(Tensor t, ReduceOp op) {
  if (!on_cuda(t)) return host_->iall_reduce(std::move(t), op);
  comm_check::all_reduce(*this, "iall_reduce", t);
  if (t.numel() == 0) return CommRequest();
  Enqueue calls = all_reduce_calls("iall_reduce", t, op);
  return request("iall_reduce", {t}, calls);
}

CommRequest NcclCommunicator::iall_to_all(Tensor send, Tensor recv) {
  if (!on_cuda(send) && !on_cuda(recv)) return host_->iall_to_all(std::move(send), std::move(recv));
  comm_check::all_to_all(*this, "iall_to_all", send, recv);
  const std::vector<int64_t> counts = equal_blocks(send, size());
  Enqueue calls = all_to_all_v_calls("iall_to_all", send, counts, recv, counts);
  return request("iall_to_all", {send, recv}, calls);
}

CommRequest NcclCommunicator::iall_to_all_v(Tensor send, std::vector<int64_t> send_counts,
                                            Tensor recv, std::vector<int64_t> recv_counts) {
  if (!on_cuda(send) && !on_cuda(recv)) {
    return host_->iall_to_all_v(std::move(send), std::move(send_counts), std::move(recv),
                                std::move(recv_counts));
  }
  comm_check::all_to_all_v(*this, "iall_to_all_v", send, send_counts, recv, recv_counts);
  Enqueue calls = all_to_all_v_calls("iall_to_all_v", send, send_counts, recv, recv_counts);
  return request("iall_to_all_v", {send, recv}, calls);
}

CommRequest NcclCommunicator::ibroadcast(Tensor t, int root) {
  if (!on_cuda(t)) return host_->ibroadcast(std::move(t), root);
  comm_check::broadcast(*this, "ibroadcast", t, root);
  if (t.numel() == 0) return CommRequest();
  Enqueue calls = broadcast_calls("ibroadcast", t, root);
  return request("ibroadcast", {t}, calls);
}

CommRequest NcclCommunicator::iall_gather(Tensor send, Tensor recv) {
  if (!on_cuda(send) && !on_cuda(recv)) return host_->iall_gather(std::move(send), std::move(recv));
  comm_check::all_gather(*this, "iall_gather", send, recv);
  if (send.numel() == 0) return CommRequest();
  Enqueue calls = all_gather_calls("iall_gather", send, recv);
  return request("iall_gather", {send, recv}, calls);
}

CommRequest NcclCommunicator::ibarrier() {
  return request("ibarrier", {}, barrier_calls());
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, std::string name) const {
  comm_check::split(*this, color);
  check_not_failed("split");
  // Both splits are collective over this communicator's ranks, in the same order everywhere;
  // both order the new ranks by key, then by old rank.
  std::shared_ptr<Communicator> host = host_->split(color, key, std::move(name));
  cuda::use_device(device_);
  auto handle = std::make_shared<NcclHandle>();
  ncclConfig_t config = non_blocking_config();
  handle_->with(where("split"), [&](ncclComm_t comm) {
    VMOE_NCCL_CHECK_STARTED(ncclCommSplit(comm, color, key, &handle->comm, &config));
    return 0;
  });
  try {
    settle(where("split"), options_.init_timeout_s);  // the parent's part of the split
    settle_handle(*handle, where("ncclCommSplit"), options_.init_timeout_s, {});
  } catch (...) {
    handle->abort();
    throw;
  }
  return std::unique_ptr<Communicator>(
      new NcclCommunicator(Adopt{}, std::move(host), std::move(handle), device_, options_));
}

}  // namespace vmoe
