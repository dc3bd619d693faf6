// NcclWatchdog: the thread that keeps NCCL failures and hangs from stalling a job. It follows
// every operation a communicator enqueued until the GPU finished it; an operation that runs on
// the GPU longer than the timeout, or an asynchronous error NCCL reports for the communicator,
// makes it abort the communicator (which ends NCCL kernels stuck waiting for a peer) and report
// one line naming the communicator, the operation and the rank (by default through abort_job,
// which ends the whole job). What it queries and does is given as hooks, so that the logic is
// tested on machines without a GPU.
#pragma once
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"

namespace vmoe {

// One operation in flight. `started` / `finished` are polled from the watchdog thread (they
// query CUDA events: recorded on the communication stream before and after the NCCL calls);
// either may throw, which counts as a failure of the operation.
struct WatchedOp {
  std::string name;  // "iall_to_all_v"
  std::function<bool()> started;
  std::function<bool()> finished;
  // Buffers of the operation, released by the watchdog once `finished` said so: until then
  // their memory cannot go back to the allocator's cache (whatever the caller does).
  std::vector<Tensor> keep_alive;
};

class NcclWatchdog {
 public:
  struct Hooks {
    // Runs first on the watchdog thread (e.g. cudaSetDevice).
    std::function<void()> thread_start;
    // ncclCommGetAsyncError of the communicator (ncclSuccess / ncclInProgress: no error).
    std::function<ncclResult_t()> async_error;
    // Aborts the communicator (ncclCommAbort); called once, before on_failure.
    std::function<void()> abort;
    // Reports the failure (one line); by default ends the job. Called once, on the thread.
    std::function<void(const std::string&)> on_failure;
  };

  // `where`: "NCCL communicator 'expert group' (rank 1 of 4)"; `timeout_s`: the longest an
  // operation may run on the GPU (from its start event to its end event).
  NcclWatchdog(std::string where, double timeout_s, Hooks hooks);
  ~NcclWatchdog();
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  void watch(WatchedOp op);
  // Operations not yet seen finished (a finished one's buffers are released before it stops
  // counting here).
  size_t in_flight() const;
  // The failure reported ("" while none): later calls on the communicator throw it.
  std::string failure() const;
  double timeout_s() const { return timeout_s_; }
  // Joins the thread (operations still in flight keep their buffers: they are released with
  // the watchdog). Idempotent.
  void stop();

  // How often the thread polls while operations are in flight, and otherwise.
  static constexpr std::chrono::milliseconds kBusyPoll{10};
  static constexpr std::chrono::milliseconds kIdlePoll{200};

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    WatchedOp op;
    bool started = false;
    Clock::time_point started_at;
  };

  void run();
  // One pass over the operations; returns the failure text ("" when none).
  std::string poll_once();
  void fail(const std::string& message);

  std::string where_;
  double timeout_s_;
  Hooks hooks_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Entry> ops_;  // in enqueue order (also the stream order)
  std::string failure_;
  bool stop_ = false;
  std::mutex join_mutex_;
  std::thread thread_;  // last: starts after the members above exist
};

// The operation timeout: `env_value` (VMOE_NCCL_TIMEOUT_S) as seconds > 0, or 10 s (the bound
// of the MPI path) when unset or empty; anything else is an std::invalid_argument naming it.
double nccl_timeout_seconds(const char* env_value);

}  // namespace vmoe
