// Tests of the NCCL communicator (parallel/nccl_*). On every machine: the check macro, the dtype
// and reduction mappings, the device choice and timeout settings, the watchdog's logic (driven
// through its hooks, no GPU), and a clear one-line error when there is no GPU. With a GPU (hidden
// tags, see the list below; each also checks cudaGetDeviceCount and reports "skipped" without
// a device): 1-rank NCCL collectives against LocalCommunicator on random inputs, and the watchdog
// on a forced timeout.
//   "[.gpu]":       nccl gpu: ... (collectives, requests, split, routing of host tensors)
//   "[.gpu_abort]": nccl gpu watchdog: ... (run it in its own process: it aborts a communicator
//                   whose kernel is still queued)
#include <cuda_runtime_api.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/ops.h"
#include "invalid_argument_message.h"
#include "parallel/local_communicator.h"
#include "parallel/nccl_check.h"
#include "parallel/nccl_communicator.h"
#include "parallel/nccl_watchdog.h"
#include "parallel/process_groups.h"

using namespace vmoe;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

using vmoe::testing::invalid_argument_message;
using Clock = std::chrono::steady_clock;

// Sets (or unsets, with nullopt) environment variables for its lifetime.
class EnvGuard {
 public:
  void set(const std::string& name, std::optional<std::string> value) {
    if (!saved_.count(name)) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value) {
      setenv(name.c_str(), value->c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
  ~EnvGuard() {
    for (auto& [name, value] : saved_) {
      if (value) {
        setenv(name.c_str(), value->c_str(), 1);
      } else {
        unsetenv(name.c_str());
      }
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

const char* const kLocalRankVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                                           "MPI_LOCALRANKID", "PMI_LOCAL_RANK"};

// What `f` throws as NcclError ("" if it does not throw).
template <class F>
std::string nccl_error_message(F&& f) {
  try {
    f();
  } catch (const NcclError& e) {
    return e.what();
  }
  return "";
}

bool one_line(const std::string& s) {
  return s.find('\n') == std::string::npos && s.find('\r') == std::string::npos;
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

// Calls `until` every millisecond until it is true or `limit` passed; returns whether it was.
template <class F>
bool eventually(F&& until, std::chrono::duration<double> limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (until()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return until();
}

// ncclCommCount with no communicator: NCCL rejects it (a real failing call).
ncclResult_t count_without_communicator() {
  int count = 0;
  return ncclCommCount(nullptr, &count);
}

}  // namespace

TEST_CASE("nccl check: a failed call throws one line naming the call, file, line and NCCL's text",
          "[nccl]") {
  std::string message;
  int line = 0;
  ncclResult_t code = ncclSuccess;
  try {
    line = __LINE__ + 1;
    VMOE_NCCL_CHECK(ncclResult_t(ncclSystemError));
  } catch (const NcclError& e) {
    message = e.what();
    code = e.code();
  }
  CHECK(code == ncclSystemError);
  CHECK_THAT(message, StartsWith("NCCL call failed: ncclResult_t(ncclSystemError): " +
                                 std::string(ncclGetErrorString(ncclSystemError))));
  CHECK_THAT(message, Contains("test_nccl_communicator.cpp:" + std::to_string(line)));
  CHECK_THAT(message, Contains("parallel/test_nccl_communicator.cpp"));
  CHECK(one_line(message));

  // A real call NCCL rejects: the message has its result text.
  const std::string real =
      nccl_error_message([] { VMOE_NCCL_CHECK(count_without_communicator()); });
  REQUIRE_FALSE(real.empty());
  CHECK_THAT(real, Contains("count_without_communicator()"));
  CHECK_THAT(real, Contains(ncclGetErrorString(count_without_communicator())));
  CHECK(one_line(real));

  CHECK_NOTHROW([] { VMOE_NCCL_CHECK(ncclResult_t(ncclSuccess)); }());
}

TEST_CASE("nccl check: the non-blocking variant accepts ncclInProgress, nothing else", "[nccl]") {
  CHECK_NOTHROW([] { VMOE_NCCL_CHECK_STARTED(ncclResult_t(ncclInProgress)); }());
  CHECK_NOTHROW([] { VMOE_NCCL_CHECK_STARTED(ncclResult_t(ncclSuccess)); }());
  CHECK_THROWS_AS([] { VMOE_NCCL_CHECK(ncclResult_t(ncclInProgress)); }(), NcclError);
  CHECK_THAT(nccl_error_message([] { VMOE_NCCL_CHECK_STARTED(ncclResult_t(ncclRemoteError)); }),
             Contains(ncclGetErrorString(ncclRemoteError)));
}

TEST_CASE("nccl mapping: every dtype and reduction has its NCCL counterpart", "[nccl]") {
  CHECK(nccl_data_type(DType::f32) == ncclFloat32);
  CHECK(nccl_data_type(DType::f64) == ncclFloat64);
  CHECK(nccl_data_type(DType::bf16) == ncclBfloat16);
  CHECK(nccl_data_type(DType::i32) == ncclInt32);
  CHECK(nccl_data_type(DType::i64) == ncclInt64);
  CHECK(nccl_data_type(DType::u8) == ncclUint8);
  CHECK(nccl_reduce_op(ReduceOp::sum) == ncclSum);
  CHECK(nccl_reduce_op(ReduceOp::max) == ncclMax);
  CHECK(nccl_reduce_op(ReduceOp::min) == ncclMin);
  CHECK_THAT(invalid_argument_message([] { nccl_data_type(DType(99)); }),
             Contains("no NCCL datatype for dtype 99"));
  CHECK_THAT(invalid_argument_message([] { nccl_reduce_op(ReduceOp(7)); }),
             Contains("no NCCL reduction for ReduceOp 7"));
}

TEST_CASE("nccl device: the local rank from the launcher picks the device, modulo the count",
          "[nccl]") {
  EnvGuard env;
  for (const char* name : kLocalRankVariables)
    env.set(name, std::nullopt);
  CHECK(local_rank_from_environment() == 0);
  env.set("SLURM_LOCALID", "5");
  CHECK(local_rank_from_environment() == 5);
  CHECK(local_cuda_device(4, "test", "") == 1);
  CHECK(local_cuda_device(8, "test", "") == 5);
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "2");  // Open MPI's comes first
  CHECK(local_rank_from_environment() == 2);
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "two");
  CHECK(invalid_argument_message([] { local_rank_from_environment(); }) ==
        "OMPI_COMM_WORLD_LOCAL_RANK must be a local rank >= 0, got 'two'");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "-1");
  CHECK_THAT(invalid_argument_message([] { local_rank_from_environment(); }), Contains("got '-1'"));

  const std::string none = nccl_error_message(
      [] { local_cuda_device(0, "NcclCommunicator 'expert group'", "the runtime says so"); });
  CHECK(none ==
        "NcclCommunicator 'expert group': no CUDA device (the runtime says so); NCCL "
        "communicators need one GPU per rank");
}

TEST_CASE("nccl timeout: VMOE_NCCL_TIMEOUT_S in seconds, 10 by default, errors name it", "[nccl]") {
  CHECK(nccl_timeout_seconds(nullptr) == 10.0);
  CHECK(nccl_timeout_seconds("") == 10.0);
  CHECK(nccl_timeout_seconds("2.5") == 2.5);
  for (const char* bad : {"0", "-3", "ten", "5s", "inf", "nan"}) {
    CAPTURE(bad);
    CHECK(invalid_argument_message([&] { nccl_timeout_seconds(bad); }) ==
          std::string("VMOE_NCCL_TIMEOUT_S must be a number of seconds > 0, got '") + bad + "'");
  }
}

TEST_CASE("nccl all_to_all_v: block offsets are the prefix sums of the counts", "[nccl]") {
  CHECK(block_offsets({}).empty());
  CHECK(block_offsets({3, 0, 2, 4}) == std::vector<int64_t>{0, 3, 3, 5});
  CHECK(invalid_argument_message([] {
          block_offsets({1, -2});
        }) == "block count 1 must be >= 0, got -2");
}

namespace {

// What the watchdog's hooks saw.
struct HookLog {
  std::atomic<int> aborts{0};
  std::atomic<int> failures{0};
  std::atomic<bool> aborted_before_report{false};
  std::atomic<ncclResult_t> async_state{ncclSuccess};
  std::mutex mutex;
  std::string message;
  Clock::time_point reported_at;
};

NcclWatchdog::Hooks hooks_for(HookLog& log) {
  NcclWatchdog::Hooks hooks;
  hooks.async_error = [&log] { return log.async_state.load(); };
  hooks.abort = [&log] { ++log.aborts; };
  hooks.on_failure = [&log](const std::string& m) {
    log.aborted_before_report = log.aborts.load() == 1;
    std::lock_guard<std::mutex> lock(log.mutex);
    log.message = m;
    log.reported_at = Clock::now();
    ++log.failures;
  };
  return hooks;
}

const std::string kWho = "NCCL communicator 'expert group' (rank 1 of 4)";

}  // namespace

TEST_CASE("nccl watchdog: finished operations are dropped with their buffers, no failure",
          "[nccl]") {
  HookLog log;
  NcclWatchdog dog(kWho, 0.2, hooks_for(log));
  std::atomic<bool> finished{false};
  Tensor buffer = Tensor::zeros({4}, DType::f32, kCpu);
  std::weak_ptr<Storage> storage = buffer.storage();
  WatchedOp op;
  op.name = "iall_reduce";
  op.started = [] { return true; };
  op.finished = [&] { return finished.load(); };
  op.keep_alive = {buffer};
  dog.watch(std::move(op));
  buffer = Tensor();
  CHECK(dog.in_flight() == 1);
  // The watchdog holds the buffer while the operation runs.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(storage.expired());
  finished = true;
  CHECK(eventually([&] { return dog.in_flight() == 0; }, std::chrono::seconds(2)));
  CHECK(storage.expired());
  // Well past the timeout: a finished operation never fails.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(dog.failure().empty());
  CHECK(log.failures == 0);
  CHECK(log.aborts == 0);
}

TEST_CASE("nccl watchdog: an operation past its deadline aborts, then reports one line in time",
          "[nccl]") {
  HookLog log;
  constexpr double kTimeout = 0.3;
  NcclWatchdog dog(kWho, kTimeout, hooks_for(log));
  WatchedOp op;
  op.name = "iall_to_all_v";
  op.started = [] { return true; };
  op.finished = [] { return false; };  // a peer never joined
  const Clock::time_point posted = Clock::now();
  dog.watch(std::move(op));
  REQUIRE(eventually([&] { return log.failures.load() == 1; }, std::chrono::seconds(5)));
  std::string message;
  double after = 0;
  {
    std::lock_guard<std::mutex> lock(log.mutex);
    message = log.message;
    after = std::chrono::duration<double>(log.reported_at - posted).count();
  }
  CHECK(message == kWho +
                       ": iall_to_all_v did not complete within 0.3 s on the GPU (a peer rank "
                       "failed or stopped calling the same collectives; VMOE_NCCL_TIMEOUT_S sets "
                       "the bound)");
  CHECK(log.aborts == 1);
  CHECK(log.aborted_before_report);
  CHECK(dog.failure() == message);
  // Reported after the timeout, and within a few 10 ms polls of it (2 s: generous for a
  // loaded machine, still far below the next timeout).
  CHECK(after >= kTimeout);
  CHECK(after < kTimeout + 2.0);
  // Reported once, even though the operation stays unfinished.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(log.failures == 1);
}

TEST_CASE("nccl watchdog: waiting for the compute stream is not a hang", "[nccl]") {
  HookLog log;
  NcclWatchdog dog(kWho, 0.05, hooks_for(log));
  std::atomic<bool> started{false}, finished{false};
  WatchedOp op;
  op.name = "iall_reduce";
  op.started = [&] { return started.load(); };
  op.finished = [&] { return finished.load(); };
  dog.watch(std::move(op));
  // The operation has not begun on the GPU (its producer kernels still run) for 4 timeouts.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(log.failures == 0);
  started = true;
  finished = true;
  CHECK(eventually([&] { return dog.in_flight() == 0; }, std::chrono::seconds(2)));
  CHECK(log.failures == 0);
}

TEST_CASE("nccl watchdog: an asynchronous NCCL error aborts and names the oldest operation",
          "[nccl]") {
  HookLog log;
  NcclWatchdog dog(kWho, 30.0, hooks_for(log));
  WatchedOp first, second;
  first.name = "iall_to_all_v";
  second.name = "iall_reduce";
  for (WatchedOp* op : {&first, &second}) {
    op->started = [] { return false; };
    op->finished = [] { return false; };
  }
  dog.watch(std::move(first));
  dog.watch(std::move(second));
  log.async_state = ncclRemoteError;
  REQUIRE(eventually([&] { return log.failures.load() == 1; }, std::chrono::seconds(5)));
  std::lock_guard<std::mutex> lock(log.mutex);
  CHECK_THAT(log.message, StartsWith(kWho + ": NCCL reported an asynchronous error: " +
                                     ncclGetErrorString(ncclRemoteError)));
  CHECK_THAT(log.message, Contains("(oldest operation in flight: iall_to_all_v)"));
  CHECK(one_line(log.message));
  CHECK(log.aborted_before_report);
}

TEST_CASE("nccl watchdog: a failing event query is the operation's failure", "[nccl]") {
  HookLog log;
  NcclWatchdog dog(kWho, 30.0, hooks_for(log));
  WatchedOp op;
  op.name = "ibroadcast";
  op.started = [] { return true; };
  op.finished = []() -> bool { throw std::runtime_error("cudaEventQuery: an illegal address"); };
  dog.watch(std::move(op));
  REQUIRE(eventually([&] { return log.failures.load() == 1; }, std::chrono::seconds(5)));
  CHECK(dog.failure() == kWho + ": ibroadcast failed: cudaEventQuery: an illegal address");
}

TEST_CASE("nccl watchdog: the timeout must be positive", "[nccl]") {
  HookLog log;
  CHECK(invalid_argument_message([&] { NcclWatchdog dog(kWho, 0.0, hooks_for(log)); }) ==
        kWho + ": the NCCL operation timeout must be > 0 seconds, got 0");
}

TEST_CASE("nccl communicator: without a GPU, construction fails with one clear line", "[nccl]") {
  const int devices = cuda_device_count();
  auto host = std::make_shared<LocalCommunicator>("expert group");
  if (devices > 0) {
    WARN("this machine has a CUDA device: checking that the communicator is made instead");
    NcclCommunicator comm(host);
    CHECK(comm.name() == "expert group");
    CHECK(comm.size() == 1);
    CHECK(comm.device_index() == local_rank_from_environment() % devices);
    return;
  }
  const std::string message = nccl_error_message([&] { NcclCommunicator comm(host); });
  CHECK_THAT(message,
             StartsWith("NcclCommunicator create on communicator 'expert group' (rank 0 of 1): "
                        "no CUDA device ("));
  CHECK_THAT(message, Contains("NCCL communicators need one GPU per rank"));
  CHECK(one_line(message));
}

TEST_CASE("nccl process groups: the gradient world is the world on the host and on one rank",
          "[nccl]") {
  // NCCL is chosen for CUDA tensors on several ranks only (the MPI test's job with a GPU per
  // rank); one rank keeps its LocalCommunicator groups, so this needs no GPU.
  for (Device tensors : {kCpu, Device{DeviceType::cuda, 0}}) {
    CAPTURE(tensors.str());
    auto world = std::make_shared<LocalCommunicator>("world");
    const ProcessGroups g = make_process_groups(world, 4, tensors);
    CHECK(g.gradient_world == g.world);
    CHECK(dynamic_cast<const LocalCommunicator*>(g.expert.get()) != nullptr);
    CHECK(dynamic_cast<const LocalCommunicator*>(g.replica.get()) != nullptr);
  }
}

// ---- GPU tests: hidden, and reported as skipped without a device. ----

namespace {

constexpr Device kGpu{DeviceType::cuda, 0};

// Random values of `dtype` on the host: integers in [-50, 50] ([0, 250] for u8), floats in
// [-1, 1) (bf16 rounded from them).
Tensor random_host(const Shape& shape, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t n = shape_numel(shape);
  std::vector<double> values(static_cast<size_t>(n));
  for (double& v : values) {
    if (dtype == DType::u8) {
      v = double(rng() % 251);
    } else if (is_floating(dtype)) {
      v = std::uniform_real_distribution<double>(-1, 1)(rng);
    } else {
      v = double(int(rng() % 101) - 50);
    }
  }
  return Tensor::from_vector(values, shape, kCpu).to(dtype);
}

// Bitwise equality of two host tensors (1 rank: every collective is an identity or a copy,
// so NCCL must give exactly LocalCommunicator's values; no tolerance).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * dtype_size(x.dtype())) == 0;
}

bool skip_without_gpu() {
  if (cuda_device_count() > 0) return false;
  WARN("skipped: no CUDA device (cudaGetDeviceCount)");
  return true;
}

}  // namespace

TEST_CASE("nccl gpu: 1-rank collectives give LocalCommunicator's results on every dtype",
          "[.gpu]") {
  if (skip_without_gpu()) return;
  LocalCommunicator local("expert group");
  NcclCommunicator nccl(std::make_shared<LocalCommunicator>("expert group"));
  uint32_t seed = 1;
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64, DType::u8}) {
    CAPTURE(dtype_name(dtype));
    const Tensor input = random_host({6, 5}, dtype, seed++);
    if (dtype != DType::bf16) {  // comm_check: bf16 is never reduced
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
        Tensor want = input.clone();
        local.all_reduce(want, op);
        Tensor got = input.to(kGpu);
        nccl.all_reduce(got, op);
        CHECK(same_bits(got.cpu(), want));
        Tensor async = input.to(kGpu);
        CommRequest r = nccl.iall_reduce(async, op);
        r.wait();
        CHECK(same_bits(async.cpu(), want));
      }
    }
    const Tensor flat = input.reshape({30});
    {
      Tensor want = Tensor::empty({30}, dtype, kCpu);
      local.all_to_all(flat, want);
      Tensor got = Tensor::empty({30}, dtype, kGpu);
      nccl.all_to_all(flat.to(kGpu), got);
      CHECK(same_bits(got.cpu(), want));
      Tensor async = Tensor::empty({30}, dtype, kGpu);
      nccl.iall_to_all(flat.to(kGpu), async).wait();
      CHECK(same_bits(async.cpu(), want));
    }
    {
      Tensor want = Tensor::empty({30}, dtype, kCpu);
      local.all_to_all_v(flat, {30}, want, {30});
      Tensor got = Tensor::empty({30}, dtype, kGpu);
      nccl.all_to_all_v(flat.to(kGpu), {30}, got, {30});
      CHECK(same_bits(got.cpu(), want));
      Tensor async = Tensor::empty({30}, dtype, kGpu);
      nccl.iall_to_all_v(flat.to(kGpu), {30}, async, {30}).wait();
      CHECK(same_bits(async.cpu(), want));
    }
    {
      Tensor got = input.to(kGpu);
      nccl.broadcast(got, 0);
      CHECK(same_bits(got.cpu(), input));
      nccl.ibroadcast(got, 0).wait();
      CHECK(same_bits(got.cpu(), input));
    }
    {
      Tensor want = Tensor::empty({30}, dtype, kCpu);
      local.all_gather(flat, want);
      Tensor got = Tensor::empty({30}, dtype, kGpu);
      nccl.all_gather(flat.to(kGpu), got);
      CHECK(same_bits(got.cpu(), want));
      Tensor async = Tensor::empty({30}, dtype, kGpu);
      CommRequest r = nccl.iall_gather(flat.to(kGpu), async);
      CHECK(eventually([&] { return r.done(); }, std::chrono::seconds(10)));
      r.wait();
      CHECK(same_bits(async.cpu(), want));
    }
  }
  nccl.barrier();
  nccl.ibarrier().wait();
  CHECK(eventually([&] { return nccl.in_flight() == 0; }, std::chrono::seconds(10)));
}

TEST_CASE("nccl gpu: operations are ordered after the producing kernels and before the consumers",
          "[.gpu]") {
  if (skip_without_gpu()) return;
  NcclCommunicator nccl(std::make_shared<LocalCommunicator>("expert group"));
  // Large enough that a missing stream dependency shows up as stale values.
  const Tensor host = random_host({1 << 22}, DType::f32, 7);
  const Tensor x = host.to(kGpu);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const Tensor produced = x * 2.0 + double(chunk);  // compute stream
    Tensor received = Tensor::empty(produced.shape(), DType::f32, kGpu);
    CommRequest r = nccl.iall_to_all(produced, received);
    r.wait();
    const Tensor consumed = received - 1.0;  // compute stream, after the exchange
    const Tensor want = host * 2.0 + double(chunk) - 1.0;
    CHECK(same_bits(consumed.cpu(), want));
  }
}

TEST_CASE("nccl gpu: host tensors go to the host communicator, split makes a working group",
          "[.gpu]") {
  if (skip_without_gpu()) return;
  NcclCommunicator nccl(std::make_shared<LocalCommunicator>("world"));
  Tensor rows = Tensor::from_vector(std::vector<int64_t>{7}, {1}, kCpu);
  Tensor all = Tensor::empty({1}, DType::i64, kCpu);
  nccl.all_gather(rows, all);
  CHECK(all.to_vector<int64_t>() == std::vector<int64_t>{7});
  std::unique_ptr<Communicator> part = nccl.split(0, 0, "replica group");
  CHECK(part->name() == "replica group");
  CHECK(part->size() == 1);
  const Tensor input = random_host({64}, DType::f32, 3);
  Tensor t = input.to(kGpu);
  part->all_reduce(t, ReduceOp::max);
  CHECK(same_bits(t.cpu(), input));
  // A non-contiguous tensor is refused, naming the operation and the communicator.
  CHECK_THAT(invalid_argument_message([&] {
               Tensor strided = input.to(kGpu).reshape({8, 8}).transpose(0, 1);
               nccl.all_reduce(strided);
             }),
             Contains("all_reduce on communicator 'world' (rank 0 of 1)"));
}

TEST_CASE("nccl gpu watchdog: a hung operation is reported within the timeout", "[.gpu_abort]") {
  if (skip_without_gpu()) return;
  // The communication stream is blocked between the operation's start event and its NCCL
  // kernel by a host function that waits for `release` (at most 20 s).
  static std::atomic<bool> release{false};
  NcclOptions options;
  options.timeout_s = 1.0;
  std::atomic<int> reports{0};
  options.on_failure = [&](const std::string&) { ++reports; };
  options.before_nccl_calls = [](cudaStream_t stream) {
    cudaLaunchHostFunc(
        stream,
        [](void*) {
          const auto end = Clock::now() + std::chrono::seconds(20);
          while (!release.load() && Clock::now() < end)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        },
        nullptr);
  };
  NcclCommunicator nccl(std::make_shared<LocalCommunicator>("expert group"), options);
  Tensor t = random_host({16}, DType::f32, 5).to(kGpu);
  const Clock::time_point posted = Clock::now();
  CommRequest r = nccl.iall_reduce(t);
  // done() turns true once the watchdog recorded the failure; wait() then throws it.
  REQUIRE(eventually([&] { return r.done(); }, std::chrono::seconds(10)));
  const double after = std::chrono::duration<double>(Clock::now() - posted).count();
  release = true;
  std::string message;
  try {
    r.wait();
  } catch (const NcclError& e) {
    message = e.what();
  }
  CHECK(message ==
        "NCCL communicator 'expert group' (rank 0 of 1): iall_reduce did not complete within 1 s "
        "on the GPU (a peer rank failed or stopped calling the same collectives; "
        "VMOE_NCCL_TIMEOUT_S sets the bound)");
  CHECK(after >= 1.0);
  CHECK(after < 3.0);
  CHECK(eventually([&] { return reports.load() == 1; }, std::chrono::seconds(30)));
  // Later calls refuse to use the aborted communicator.
  CHECK_THAT(nccl_error_message([&] { nccl.all_reduce(t); }),
             Contains("an earlier NCCL operation failed"));
}
