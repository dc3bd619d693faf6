// NcclWatchdog: the polling thread, and the timeout setting.
#include "parallel/nccl_watchdog.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <utility>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace vmoe {

namespace {

std::string seconds_text(double s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

std::string one_line(const char* text) {
  std::string s = text != nullptr ? text : "";
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

double nccl_timeout_seconds(const char* env_value) {
  constexpr double kDefaultSeconds = 10.0;  // the MPI path's bound (kCommunicationQuietSeconds)
  if (env_value == nullptr || *env_value == '\0') return kDefaultSeconds;
  char* end = nullptr;
  const double value = std::strtod(env_value, &end);
  if (end == env_value || *end != '\0' || !std::isfinite(value) || value <= 0) {
    throw std::invalid_argument(std::string("VMOE_NCCL_TIMEOUT_S must be a number of seconds > 0, "
                                            "got '") +
                                env_value + "'");
  }
  return value;
}

NcclWatchdog::NcclWatchdog(std::string where, double timeout_s, Hooks hooks)
    : where_(std::move(where)), timeout_s_(timeout_s), hooks_(std::move(hooks)) {
  if (!(timeout_s_ > 0) || !std::isfinite(timeout_s_)) {
    throw std::invalid_argument(where_ + ": the NCCL operation timeout must be > 0 seconds, got " +
                                seconds_text(timeout_s_));
  }
  thread_ = std::thread([this] { run(); });
}

NcclWatchdog::~NcclWatchdog() {
  stop();
}

void NcclWatchdog::watch(WatchedOp op) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ops_.push_back({std::move(op), false, {}});
  }
  cv_.notify_one();
}

size_t NcclWatchdog::in_flight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ops_.size();
}

std::string NcclWatchdog::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void NcclWatchdog::stop() {
  std::lock_guard<std::mutex> join_lock(join_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void NcclWatchdog::run() {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "vmoe-nccl-dog");
#endif
  try {
    if (hooks_.thread_start) hooks_.thread_start();
  } catch (const std::exception& e) {
    fail(where_ + ": the NCCL watchdog could not start: " + one_line(e.what()));
    return;
  }
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_for(lock, ops_.empty() ? kIdlePoll : kBusyPoll, [&] { return stop_; });
      if (stop_) return;
    }
    std::string failure = poll_once();
    if (!failure.empty()) {
      fail(failure);
      return;  // the communicator is aborted: nothing more to watch
    }
  }
}

std::string NcclWatchdog::poll_once() {
  if (hooks_.async_error) {
    const ncclResult_t state = hooks_.async_error();
    if (state != ncclSuccess && state != ncclInProgress) {
      std::string oldest;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!ops_.empty()) oldest = " (oldest operation in flight: " + ops_.front().op.name + ")";
      }
      return where_ +
             ": NCCL reported an asynchronous error: " + one_line(ncclGetErrorString(state)) +
             ": " + one_line(ncclGetLastError(nullptr)) + oldest;
    }
  }
  // The operations run in stream order: only the oldest unfinished one can be running, so
  // the pass stops at the first that has not finished. Probes run outside the lock (they may
  // take a while); only this thread removes entries, so the front stays valid meanwhile.
  for (;;) {
    Entry* front = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (ops_.empty()) return "";
      front = &ops_.front();
    }
    const Clock::time_point now = Clock::now();
    try {
      if (!front->started && front->op.started()) {
        front->started = true;
        front->started_at = now;
      }
      if (front->started && front->op.finished()) {
        // Release the buffers outside the lock, and before the entry leaves the list: once
        // in_flight() no longer counts an operation, nothing of it is held.
        { WatchedOp done = std::move(front->op); }
        std::lock_guard<std::mutex> lock(mutex_);
        ops_.pop_front();
        continue;
      }
    } catch (const std::exception& e) {
      return where_ + ": " + front->op.name + " failed: " + one_line(e.what());
    }
    if (front->started &&
        std::chrono::duration<double>(now - front->started_at).count() > timeout_s_) {
      return where_ + ": " + front->op.name + " did not complete within " +
             seconds_text(timeout_s_) +
             " s on the GPU (a peer rank failed or stopped calling the same collectives; "
             "VMOE_NCCL_TIMEOUT_S sets the bound)";
    }
    return "";
  }
}

void NcclWatchdog::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ = message;
  }
  try {
    if (hooks_.abort) hooks_.abort();
  } catch (...) {
    // Aborting is best effort: the report below ends the job anyway.
  }
  try {
    if (hooks_.on_failure) hooks_.on_failure(message);
  } catch (...) {
    // A throwing handler must not end the thread with std::terminate: the failure is recorded.
  }
}

}  // namespace vmoe
