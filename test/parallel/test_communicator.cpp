// Single-process tests of parallel/: LocalCommunicator semantics and argument errors (the
// checks every communicator shares), the scalar helpers, LocalCommunicator and the expert
// exchange on a device the host cannot read (cpu_strict), launched_by_mpi(), MpiRuntime outside
// MPI, and abort_job.
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/transfer_counts.h"
#include "invalid_argument_message.h"
#include "parallel/communicator.h"
#include "parallel/expert_parallel_exchange.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_runtime.h"

using namespace vmoe;
using Catch::Matchers::Contains;

namespace {

using vmoe::testing::invalid_argument_message;

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
    for (const auto& [name, value] : saved_) {
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

const std::vector<std::string> kLaunchVars = {
    "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_NTASKS", "SLURM_PROCID"};

}  // namespace

TEST_CASE("communicator: LocalCommunicator: rank 0 of 1, named", "[communicator]") {
  LocalCommunicator comm("expert group");
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  CHECK(comm.name() == "expert group");
  CHECK(LocalCommunicator().name() == "local");
}

TEST_CASE("communicator: LocalCommunicator: all_reduce keeps the values for every op and dtype",
          "[communicator]") {
  LocalCommunicator comm;
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
    Tensor f = Tensor::from_vector<float>({1.5f, -2.f, 3.f}, {3});
    comm.all_reduce(f, op);
    CHECK(f.cpu().to_vector<float>() == std::vector<float>{1.5f, -2.f, 3.f});
    Tensor d = Tensor::from_vector<double>({0.25, 7.0}, {2, 1});
    comm.all_reduce(d, op);
    CHECK(d.cpu().to_vector<double>() == std::vector<double>{0.25, 7.0});
    Tensor i = Tensor::from_vector<int64_t>({-5, 1LL << 40}, {2});
    comm.all_reduce(i, op);
    CHECK(i.cpu().to_vector<int64_t>() == std::vector<int64_t>{-5, 1LL << 40});
  }
  CHECK(all_reduce_scalar(comm, 2.5) == 2.5);
  CHECK(all_reduce_scalar(comm, int64_t{-7}, ReduceOp::max) == -7);
}

TEST_CASE(
    "communicator: LocalCommunicator: all_to_all, all_to_all_v and all_gather copy send into recv",
    "[communicator]") {
  LocalCommunicator comm;
  Tensor send = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor recv = Tensor::zeros({6}, DType::f32);
  comm.all_to_all(send, recv);
  CHECK(recv.cpu().to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});

  Tensor recv_v = Tensor::zeros({3, 2}, DType::f32);
  comm.all_to_all_v(send, {6}, recv_v, {6});
  CHECK(recv_v.cpu().to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});

  Tensor empty_send = Tensor::zeros({0}, DType::i64);
  Tensor empty_recv = Tensor::zeros({0, 4}, DType::i64);
  comm.all_to_all_v(empty_send, {0}, empty_recv, {0});
  comm.all_to_all(empty_send, empty_recv);

  Tensor gathered = Tensor::zeros({6}, DType::f32);
  comm.all_gather(send, gathered);
  CHECK(gathered.cpu().to_vector<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});

  // bf16 moves as raw 2-byte values.
  Tensor b = Tensor::from_vector<BFloat16>({to_bf16(1.5f), to_bf16(-3.f)}, {2});
  Tensor b_recv = Tensor::zeros({2}, DType::bf16);
  comm.all_to_all(b, b_recv);
  const std::vector<BFloat16> b_got = b_recv.cpu().to_vector<BFloat16>();
  CHECK(from_bf16(b_got[0]) == 1.5f);
  CHECK(from_bf16(b_got[1]) == -3.f);
}

TEST_CASE("communicator: LocalCommunicator: broadcast from root 0 and barrier are no-ops",
          "[communicator]") {
  LocalCommunicator comm;
  Tensor t = Tensor::from_vector<int32_t>({4, 5}, {2});
  comm.broadcast(t, 0);
  CHECK(t.cpu().to_vector<int32_t>() == std::vector<int32_t>{4, 5});
  comm.barrier();
}

TEST_CASE("communicator: LocalCommunicator: non-blocking variants complete at once",
          "[communicator]") {
  LocalCommunicator comm;
  Tensor send = Tensor::from_vector<double>({1, 2, 3, 4}, {4});
  Tensor recv = Tensor::zeros({4}, DType::f64);
  CommRequest a = comm.iall_to_all(send, recv);
  CHECK(a.done());
  CHECK(recv.cpu().to_vector<double>() == std::vector<double>{1, 2, 3, 4});
  Tensor recv_v = Tensor::zeros({4}, DType::f64);
  CommRequest b = comm.iall_to_all_v(send, {4}, recv_v, {4});
  CHECK(b.done());
  CHECK(recv_v.cpu().to_vector<double>() == std::vector<double>{1, 2, 3, 4});
  Tensor gathered = Tensor::zeros({4}, DType::f64);
  CommRequest c = comm.iall_gather(send, gathered);
  CHECK(gathered.cpu().to_vector<double>() == std::vector<double>{1, 2, 3, 4});
  CommRequest d = comm.iall_reduce(send, ReduceOp::max);
  CommRequest e = comm.ibroadcast(send, 0);
  CommRequest f = comm.ibarrier();
  for (CommRequest* r : {&a, &b, &c, &d, &e, &f}) {
    CHECK(r->done());
    r->wait();
    CHECK(r->done());
  }
  CHECK(send.cpu().to_vector<double>() == std::vector<double>{1, 2, 3, 4});
  CHECK(CommRequest().done());
}

TEST_CASE("communicator: LocalCommunicator: split gives another single-process communicator",
          "[communicator]") {
  LocalCommunicator comm("world");
  std::unique_ptr<Communicator> sub = comm.split(3, -1, "replica group");
  REQUIRE(sub);
  CHECK(sub->rank() == 0);
  CHECK(sub->size() == 1);
  CHECK(sub->name() == "replica group");
  CHECK(dynamic_cast<LocalCommunicator*>(sub.get()) != nullptr);
  CHECK_THAT(invalid_argument_message([&] { comm.split(-1, 0, "x"); }),
             Contains("split on communicator 'world'") && Contains("color -1"));
}

TEST_CASE(
    "communicator: LocalCommunicator: argument errors name the operation, communicator and values",
    "[communicator]") {
  LocalCommunicator comm("world");
  Tensor f6 = Tensor::zeros({6}, DType::f32);
  Tensor f4 = Tensor::zeros({4}, DType::f32);
  Tensor d6 = Tensor::zeros({6}, DType::f64);
  Tensor g6 = Tensor::zeros({6}, DType::f32);

  SECTION("all_to_all: sizes and dtypes must match") {
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all(f6, f4); }),
               Contains("all_to_all on communicator 'world' (rank 0 of 1)") &&
                   Contains("recv [4] f32 has 4 elements, expected 6"));
    CHECK_THAT(invalid_argument_message([&] { comm.iall_to_all(f6, d6); }),
               Contains("iall_to_all on communicator 'world'") && Contains("different dtypes"));
  }
  SECTION("send and recv must not overlap") {
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all(f6, f6); }), Contains("overlap"));
    CHECK_THAT(invalid_argument_message([&] { comm.all_gather(f6, f6); }), Contains("overlap"));
  }
  SECTION("tensors must be contiguous CPU tensors") {
    Tensor m = Tensor::zeros({2, 3}, DType::f32).transpose(0, 1);
    CHECK_THAT(invalid_argument_message([&] { comm.all_reduce(m); }),
               Contains("all_reduce on communicator 'world'") && Contains("not contiguous"));
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all(m, f6); }),
               Contains("send [3, 2] f32 is not contiguous"));
    Tensor undefined;
    CHECK_THAT(invalid_argument_message([&] { comm.broadcast(undefined, 0); }),
               Contains("undefined"));
  }
  SECTION("all_to_all_v: counts") {
    CHECK_THAT(invalid_argument_message([&] {
                 comm.all_to_all_v(f6, {3, 3}, g6, {6});
               }),
               Contains("all_to_all_v on communicator 'world'") &&
                   Contains("send_counts [3, 3] has 2 entries, expected one per rank (1)"));
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all_v(f6, {5}, g6, {6}); }),
               Contains("send_counts [5] sum to 5, but send [6] f32 has 6 elements"));
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all_v(f6, {6}, f4, {6}); }),
               Contains("recv_counts [6] sum to 6, but recv [4] f32 has 4 elements"));
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all_v(f6, {-1}, g6, {6}); }),
               Contains("negative count -1"));
    CHECK_THAT(invalid_argument_message(
                   [&] { comm.iall_to_all_v(f6, {6}, Tensor::zeros({7}, DType::f32), {7}); }),
               Contains("iall_to_all_v") && Contains("sends 6 elements to itself") &&
                   Contains("receive 7"));
  }
  SECTION("broadcast: root must be a rank") {
    CHECK_THAT(invalid_argument_message([&] { comm.broadcast(f6, 1); }),
               Contains("broadcast on communicator 'world'") && Contains("root 1") &&
                   Contains("(0 to 0)"));
    CHECK_THAT(invalid_argument_message([&] { comm.ibroadcast(f6, -1); }), Contains("root -1"));
  }
  SECTION("all_gather: recv holds size x send") {
    CHECK_THAT(invalid_argument_message([&] { comm.all_gather(f4, f6); }),
               Contains("all_gather on communicator 'world'") &&
                   Contains("recv [6] f32 has 6 elements, expected size 1 x 4"));
  }
  SECTION("bf16 cannot be reduced") {
    Tensor b = Tensor::zeros({3}, DType::bf16);
    CHECK_THAT(invalid_argument_message([&] { comm.all_reduce(b); }),
               Contains("all_reduce") && Contains("bf16"));
    CHECK_THAT(invalid_argument_message([&] { comm.iall_reduce(b, ReduceOp::max); }),
               Contains("iall_reduce") && Contains("bf16"));
  }
  SECTION("send and recv must be on one device") {
    Tensor host = Tensor::zeros({6}, DType::f32, kCpu);
    Tensor strict = Tensor::zeros({6}, DType::f32, kCpuStrict);
    CHECK_THAT(invalid_argument_message([&] { comm.all_to_all(host, strict); }),
               Contains("all_to_all on communicator 'world'") &&
                   Contains("send [6] f32 is on cpu but recv [6] f32 is on cpu_strict"));
    CHECK_THAT(invalid_argument_message([&] { comm.iall_gather(strict, host); }),
               Contains("iall_gather") && Contains("is on cpu_strict but recv"));
  }
  SECTION("messages are one line") {
    const std::string m = invalid_argument_message([&] { comm.all_to_all(f6, f4); });
    CHECK(!m.empty());
    CHECK(m.find('\n') == std::string::npos);
  }
}

namespace {

// Every LocalCommunicator collective on `device`, results read back to the host in one list.
std::vector<double> local_collectives(Device device) {
  LocalCommunicator comm;
  std::vector<double> out;
  const auto read = [&](const Tensor& t) {
    for (double v : to_dtype(t, DType::f64).cpu().to_vector<double>())
      out.push_back(v);
  };
  Tensor send = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, device);
  Tensor recv = Tensor::full({6}, -1.0, DType::f32, device);
  comm.all_to_all(send, recv);
  read(recv);
  Tensor recv_v = Tensor::full({3, 2}, -1.0, DType::f32, device);
  comm.all_to_all_v(send, {6}, recv_v, {6});
  read(recv_v);
  Tensor gathered = Tensor::full({6}, -1.0, DType::f32, device);
  comm.all_gather(send, gathered);
  read(gathered);
  Tensor reduced = Tensor::from_vector<double>({0.5, -2}, {2}, device);
  comm.all_reduce(reduced, ReduceOp::max);
  comm.broadcast(reduced, 0);
  read(reduced);
  Tensor i = Tensor::from_vector<int64_t>({7, 1LL << 40}, {2}, device);
  Tensor i_recv = Tensor::zeros({2}, DType::i64, device);
  CommRequest a = comm.iall_to_all(i, i_recv);
  a.wait();
  read(i_recv);
  Tensor d_recv = Tensor::zeros({2}, DType::f64, device);
  comm.iall_to_all_v(reduced, {2}, d_recv, {2}).wait();
  read(d_recv);
  Tensor d_gathered = Tensor::zeros({2}, DType::f64, device);
  comm.iall_gather(reduced, d_gathered).wait();
  comm.iall_reduce(d_gathered).wait();
  comm.ibroadcast(d_gathered, 0).wait();
  read(d_gathered);
  read(send);  // left alone
  return out;
}

// One single-process exchange (a LocalCommunicator as the expert group) on `device`, forward
// and backward: the outputs, input gradients and expert-parameter gradients, and the host
// reads of the strict device while it ran.
struct LocalExchangeRun {
  std::vector<double> out, grad_in, grad_scale;
  int64_t host_reads = 0;
};

LocalExchangeRun run_local_exchange(Device device, int64_t chunks) {
  const int64_t e = 4, r = 5, d = 3;
  ExpertParallelExchange exchange(std::make_shared<LocalCommunicator>("expert group"), e, chunks);
  std::vector<double> v, c;
  for (int64_t x = 0; x < e; ++x)
    for (int64_t i = 0; i < r; ++i)
      for (int64_t f = 0; f < d; ++f) {
        v.push_back(double(100 * x + 10 * i + f));
        c.push_back(double(1 + (x + i + f) % 3));
      }
  Tensor dispatched = Tensor::from_vector(v, {e, r, d}, device);
  dispatched.set_requires_grad(true);
  Tensor scale = Tensor::from_vector<double>({1, 2, 3, 4}, {e, 1, 1}, device);
  scale.set_requires_grad(true);
  Tensor cw = Tensor::from_vector(c, {e, r, d}, device);
  LocalExchangeRun run;
  {
    TransferCounter reads(kCpuStrict);
    Tensor out =
        exchange(dispatched, Tensor(), [&](const Tensor& t, const Tensor&) { return t * scale; });
    sum_all(out * cw).backward();
    run.host_reads = reads.now().to_host;
    run.out = out.cpu().to_vector<double>();
  }
  run.grad_in = dispatched.grad().cpu().to_vector<double>();
  run.grad_scale = scale.grad().cpu().to_vector<double>();
  return run;
}

}  // namespace

TEST_CASE("communicator: LocalCommunicator on a device the host cannot read gives the host results",
          "[communicator]") {
  const std::vector<double> host = local_collectives(kCpu);
  CHECK(host.size() == 32);
  TransferCounter reads(kCpuStrict);
  const std::vector<double> strict = local_collectives(kCpuStrict);
  CHECK(strict == host);
  // The collectives copy on the device; only the reads of the results came to the host.
  CHECK(reads.now().to_host == 8);
}

TEST_CASE("exchange: a single-process expert exchange on cpu_strict equals cpu, no host reads",
          "[communicator]") {
  for (int64_t chunks : {1, 2, 3, 0}) {
    CAPTURE(chunks);
    const LocalExchangeRun host = run_local_exchange(kCpu, chunks);
    const LocalExchangeRun strict = run_local_exchange(kCpuStrict, chunks);
    CHECK(strict.out == host.out);
    CHECK(strict.grad_in == host.grad_in);
    CHECK(strict.grad_scale == host.grad_scale);
    CHECK(strict.host_reads == 0);
    // Closed form: out = v * (expert + 1), d out / d v = c * (expert + 1).
    const int64_t per_expert = 5 * 3;
    bool values_ok = host.out.size() == size_t(4 * per_expert);
    for (size_t k = 0; values_ok && k < host.out.size(); ++k) {
      const double expert = double(int64_t(k) / per_expert);
      const double v =
          double(100 * (int64_t(k) / per_expert) + 10 * ((int64_t(k) / 3) % 5) + int64_t(k) % 3);
      values_ok = host.out[k] == v * (expert + 1);
    }
    CHECK(values_ok);
    REQUIRE(host.grad_scale.size() == 4);
    CHECK(host.grad_scale[0] > 0);
  }
}

TEST_CASE("communicator: launched_by_mpi reads the launcher's environment", "[communicator]") {
  EnvGuard env;
  for (const std::string& v : kLaunchVars)
    env.set(v, std::nullopt);
  CHECK_FALSE(launched_by_mpi());
  env.set("OMPI_COMM_WORLD_SIZE", "1");
  CHECK(launched_by_mpi());
  env.set("OMPI_COMM_WORLD_SIZE", std::nullopt);
  env.set("PMIX_RANK", "0");
  CHECK(launched_by_mpi());
  env.set("PMIX_RANK", std::nullopt);
  env.set("PMI_RANK", "3");
  CHECK(launched_by_mpi());
  env.set("PMI_RANK", std::nullopt);
  env.set("PMI_SIZE", "4");
  CHECK(launched_by_mpi());
  env.set("PMI_SIZE", std::nullopt);
  // Slurm: only a step with several tasks (a batch script itself has SLURM_NTASKS=1 or runs
  // one task).
  env.set("SLURM_PROCID", "0");
  env.set("SLURM_NTASKS", "1");
  CHECK_FALSE(launched_by_mpi());
  env.set("SLURM_NTASKS", "8");
  CHECK(launched_by_mpi());
  env.set("SLURM_PROCID", std::nullopt);
  CHECK_FALSE(launched_by_mpi());
  env.set("OMPI_COMM_WORLD_SIZE", "");
  CHECK_FALSE(launched_by_mpi());
}

TEST_CASE("communicator: MpiRuntime started plainly: a local world and no MPI_Init",
          "[communicator]") {
  if (launched_by_mpi()) {
    WARN("skipped: this test process runs under an MPI launcher");
    return;
  }
  {
    MpiRuntime runtime;
    CHECK_FALSE(runtime.using_mpi());
    CHECK(runtime.local_ranks() == 1);
    std::shared_ptr<Communicator> world = runtime.world();
    REQUIRE(world);
    CHECK(world == runtime.world());
    CHECK(world->name() == "world");
    CHECK(world->size() == 1);
    CHECK(world->rank() == 0);
    CHECK(dynamic_cast<LocalCommunicator*>(world.get()) != nullptr);
    CHECK(all_reduce_scalar(*world, 4.0) == 4.0);
  }
  int initialized = 1;
  MPI_Initialized(&initialized);
  CHECK(initialized == 0);
}

TEST_CASE("communicator: abort_job prints one error line and exits with status 1",
          "[communicator]") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    abort_job("capacity_factor must be > 0, got -1\n");
  }
  close(fds[1]);
  std::string err;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0)
    err.append(buf, size_t(n));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK(err == "vmoe: error: capacity_factor must be > 0, got -1\n");
}
