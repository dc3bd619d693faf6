// The host run of the CUDA kernel bodies (core/cuda/*_bodies.h) for the tests: an elementwise
// body runs for every (block, thread) of its grid in turn; a row or reduction body gets a
// HostBlock per thread, each thread of a block on its own host thread with a barrier for
// sync(), so the very code of the device, block reductions included, runs here unchanged.
// Also the conversions and comparisons the body tests share.
#pragma once
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "core/cuda/kernel_bodies.h"
#include "core/dtype.h"

namespace vmoe::test {

// Runs `body(GridPos)` for every thread of a grid of `blocks` x `threads`.
template <class Body>
void run_grid(int64_t blocks, int64_t threads, Body&& body) {
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < threads; ++t)
      body(cuda::GridPos{b, t, threads, blocks});
}

// __syncthreads for a block's host threads: the last thread to arrive releases the others. A
// mutex and a condition variable, not std::barrier: its waiters spin, which starves the
// threads still on their way when a block has more threads than the machine has cores.
class HostBarrier {
 public:
  explicit HostBarrier(int64_t threads) : threads_(threads) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t phase = phase_;
    if (++arrived_ == threads_) {
      arrived_ = 0;
      ++phase_;
      released_.notify_all();
      return;
    }
    released_.wait(lock, [&] { return phase_ != phase; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int64_t threads_, arrived_ = 0, phase_ = 0;
};

// The Block interface of kernel_bodies.h for one host thread.
struct HostBlock {
  int64_t block_, blocks_, thread_, threads_;
  HostBarrier* barrier_;
  unsigned char* scratch_;

  int64_t block() const { return block_; }
  int64_t blocks() const { return blocks_; }
  int64_t thread() const { return thread_; }
  int64_t threads() const { return threads_; }
  void sync() const { barrier_->arrive_and_wait(); }
  template <class T>
  T* scratch() const {
    return reinterpret_cast<T*>(scratch_);
  }
};

// Runs `body(const HostBlock&)` for every thread of `blocks` blocks of `threads` threads: one
// block after the other, a block's threads at once.
template <class Body>
void run_blocks(int64_t blocks, int64_t threads, Body&& body) {
  for (int64_t b = 0; b < blocks; ++b) {
    HostBarrier barrier(threads);
    alignas(16) unsigned char scratch[cuda::kRowThreads * cuda::kScratchValueBytes] = {};
    std::vector<std::thread> pool;
    pool.reserve(size_t(threads));
    for (int64_t t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { body(HostBlock{b, blocks, t, threads, &barrier, scratch}); });
    for (std::thread& th : pool)
      th.join();
  }
}

// The type the CPU backend computes a stored type in (bf16: f32 of the rounded values).
template <class T>
using ref_t = cuda::compute_t<T>;

template <class T>
double as_double(const T& v) {
  return cuda::to_double(v);
}
template <class T>
T of_double(double v) {
  return cuda::from_double<T>(v);
}

// n uniform values in [lo, hi), rounded to T.
template <class T>
std::vector<T> random_of(int64_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v)
    x = of_double<T>(u(rng));
  return v;
}

// The values as the CPU's compute type.
template <class T>
std::vector<ref_t<T>> as_ref(const std::vector<T>& v) {
  std::vector<ref_t<T>> out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = ref_t<T>(as_double(v[i]));
  return out;
}

// Largest |a - b| / (1 + |b|).
template <class A, class B>
double max_rel_error(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = as_double(a[i]), y = as_double(b[i]);
    const double e = std::abs(x - y) / (1 + std::abs(y));
    if (!(e <= worst)) worst = e;  // NaN counts as the worst
  }
  return worst;
}

// The tolerance of a comparison with the CPU backend: f64 ~1e-12 relative (sums in another
// order, libm vs the device's functions: a few ulps times the length of a sum); f32 as the
// test says; bf16 1e-2 (one bf16 rounding of the result is 2^-9 relative, the inputs are the
// same rounded values on both sides, and stored intermediates such as mean/rstd add a few more).
template <class T>
double tolerance(double f32_tol) {
  if constexpr (std::is_same_v<T, double>)
    return 1e-12;
  else if constexpr (std::is_same_v<T, float>)
    return f32_tol;
  else
    return 1e-2;
}

}  // namespace vmoe::test
