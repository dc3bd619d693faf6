// MPI tests of MpiCommunicator (run with 1, 2 and 4 ranks): every collective and its
// non-blocking form against closed-form expectations, subgroups from split, dtypes, argument
// errors (thrown on every rank before any MPI call, so nothing hangs), the checking macro, and
// the progress thread (a large all-to-all completes while the caller computes; no busy core).
// Every test case makes the same collectives on every rank; results are checked afterwards with
// CHECK, never REQUIRE, so a failure on one rank cannot desynchronise the ranks.
#include <sys/resource.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/ops.h"
#include "invalid_argument_message.h"
#include "parallel/communicator.h"
#include "parallel/mpi_check.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_runtime.h"

namespace vmoe {
// Defined in test/test_main_mpi.cpp.
MpiRuntime& test_mpi_runtime();
}  // namespace vmoe

using namespace vmoe;
using Catch::Matchers::Contains;

namespace {

Communicator& world() {
  return *test_mpi_runtime().world();
}

// The value element k of the block that rank `src` sends to rank `dst` carries.
int64_t code(int src, int dst, int64_t k) {
  return src * 1000 + dst * 100 + k;
}

// "" when t holds `expected`, else a description of the first difference.
template <class T>
std::string first_mismatch(const Tensor& t, const std::vector<T>& expected) {
  if (t.numel() != int64_t(expected.size())) {
    return "numel " + std::to_string(t.numel()) + " != " + std::to_string(expected.size());
  }
  const std::vector<T> got = t.cpu().to_vector<T>();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected[i]) {
      return "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", expected " +
             std::to_string(expected[i]);
    }
  }
  return "";
}

using vmoe::testing::invalid_argument_message;

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// send [P * b]: block j = code(rank, j, 0..b-1); the expected recv: block j = code(j, rank, .).
template <class T>
void all_to_all_buffers(const Communicator& c, int64_t b, std::vector<T>& send,
                        std::vector<T>& expected) {
  send.clear();
  expected.clear();
  for (int j = 0; j < c.size(); ++j) {
    for (int64_t k = 0; k < b; ++k) {
      send.push_back(T(code(c.rank(), j, k)));
      expected.push_back(T(code(j, c.rank(), k)));
    }
  }
}

// Variable counts with zeros: rank r sends (2r + j) % 3 elements to rank j.
int64_t v_count(int src, int dst) {
  return (2 * src + dst) % 3;
}

template <class T>
void all_to_all_v_buffers(const Communicator& c, std::vector<int64_t>& send_counts,
                          std::vector<T>& send, std::vector<int64_t>& recv_counts,
                          std::vector<T>& expected) {
  send_counts.clear();
  recv_counts.clear();
  send.clear();
  expected.clear();
  for (int j = 0; j < c.size(); ++j) {
    send_counts.push_back(v_count(c.rank(), j));
    recv_counts.push_back(v_count(j, c.rank()));
    for (int64_t k = 0; k < send_counts.back(); ++k)
      send.push_back(T(code(c.rank(), j, k)));
    for (int64_t k = 0; k < recv_counts.back(); ++k)
      expected.push_back(T(code(j, c.rank(), k)));
  }
}

}  // namespace

TEST_CASE("MpiRuntime under mpiexec: an MPI world of every rank", "[mpi]") {
  MpiRuntime& runtime = test_mpi_runtime();
  CHECK(launched_by_mpi());
  CHECK(runtime.using_mpi());
  CHECK(runtime.world() == runtime.world());
  Communicator& w = world();
  CHECK(w.name() == "world");
  CHECK(dynamic_cast<MpiCommunicator*>(&w) != nullptr);
  const char* env_size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (env_size) CHECK(w.size() == std::atoi(env_size));
  CHECK(w.rank() >= 0);
  CHECK(w.rank() < w.size());
  // The tests run on one node.
  CHECK(runtime.local_ranks() == w.size());
  int provided = 0;
  MPI_Query_thread(&provided);
  CHECK(provided == MPI_THREAD_MULTIPLE);
}

TEMPLATE_TEST_CASE("MpiCommunicator: all_reduce sum, max and min", "[mpi]", float, double, int64_t,
                   int32_t) {
  Communicator& c = world();
  const int64_t P = c.size();
  const int64_t r = c.rank();
  const int64_t n = 7;
  // Element i on rank r: s_i (r + 1)(i + 1) with sign s_i alternating.
  std::vector<TestType> v, sum, max, min;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = i % 2 == 0 ? 1 : -1;
    v.push_back(TestType(s * (r + 1) * (i + 1)));
    sum.push_back(TestType(s * P * (P + 1) / 2 * (i + 1)));
    max.push_back(TestType(s > 0 ? P * (i + 1) : -(i + 1)));
    min.push_back(TestType(s > 0 ? (i + 1) : -P * (i + 1)));
  }
  Tensor t_sum = Tensor::from_vector(v, {n});
  Tensor t_max = Tensor::from_vector(v, {1, n});
  Tensor t_min = Tensor::from_vector(v, {n, 1});
  c.all_reduce(t_sum);
  c.all_reduce(t_max, ReduceOp::max);
  c.all_reduce(t_min, ReduceOp::min);
  CHECK(first_mismatch(t_sum, sum) == "");
  CHECK(first_mismatch(t_max, max) == "");
  CHECK(first_mismatch(t_min, min) == "");
}

TEST_CASE("MpiCommunicator: scalar helpers", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  CHECK(all_reduce_scalar(c, c.rank() + 0.5) == Approx(P * (P - 1) / 2.0 + 0.5 * P));
  CHECK(all_reduce_scalar(c, int64_t(c.rank()) << 40, ReduceOp::max) == int64_t(P - 1) << 40);
  CHECK(all_reduce_scalar(c, int64_t(c.rank() + 3), ReduceOp::min) == 3);
}

TEMPLATE_TEST_CASE("MpiCommunicator: all_to_all with equal blocks", "[mpi]", float, double, int64_t,
                   int32_t) {
  Communicator& c = world();
  std::vector<TestType> send, expected;
  all_to_all_buffers<TestType>(c, 5, send, expected);
  Tensor s = Tensor::from_vector(send, {c.size(), 5});
  Tensor recv = Tensor::full({c.size() * 5}, -1.0, dtype_of<TestType>());
  c.all_to_all(s, recv);
  CHECK(first_mismatch(recv, expected) == "");
  CHECK(first_mismatch(s, send) == "");  // send is left alone
}

TEST_CASE("MpiCommunicator: all_to_all and all_gather move bf16 as raw values", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int b = 3;
  // Small integers are exact in bf16.
  const auto value = [](int src, int dst, int k) { return float(src * 16 + dst * 4 + k); };
  std::vector<BFloat16> send;
  for (int j = 0; j < P; ++j) {
    for (int k = 0; k < b; ++k)
      send.push_back(to_bf16(value(c.rank(), j, k)));
  }
  Tensor recv = Tensor::zeros({P * b}, DType::bf16);
  c.all_to_all(Tensor::from_vector(send, {P * b}), recv);
  Tensor gathered = Tensor::zeros({P * b}, DType::bf16);
  c.all_gather(Tensor::from_vector(std::vector<BFloat16>(send.begin(), send.begin() + b), {b}),
               gathered);
  const std::vector<BFloat16> got = recv.cpu().to_vector<BFloat16>();
  const std::vector<BFloat16> got_gathered = gathered.cpu().to_vector<BFloat16>();
  int wrong = 0;
  for (int j = 0; j < P; ++j) {
    for (int k = 0; k < b; ++k) {
      wrong += from_bf16(got[size_t(j * b + k)]) != value(j, c.rank(), k);
      wrong += from_bf16(got_gathered[size_t(j * b + k)]) != value(j, 0, k);
    }
  }
  CHECK(wrong == 0);
}

TEMPLATE_TEST_CASE("MpiCommunicator: all_to_all_v with variable and zero counts", "[mpi]", float,
                   double, int64_t) {
  Communicator& c = world();
  const int P = c.size();
  std::vector<int64_t> send_counts, recv_counts;
  std::vector<TestType> send, expected;
  all_to_all_v_buffers(c, send_counts, send, recv_counts, expected);
  Tensor recv = Tensor::full({int64_t(expected.size())}, -1.0, dtype_of<TestType>());
  c.all_to_all_v(Tensor::from_vector(send, {int64_t(send.size())}), send_counts, recv, recv_counts);
  CHECK(first_mismatch(recv, expected) == "");

  // Everything to rank 0: rank r sends 2 (r + 1) elements there, nothing elsewhere.
  std::vector<int64_t> to_root(size_t(P), 0), from(size_t(P), 0);
  to_root[0] = 2 * (c.rank() + 1);
  std::vector<TestType> s2, e2;
  for (int64_t k = 0; k < to_root[0]; ++k)
    s2.push_back(TestType(code(c.rank(), 0, k)));
  if (c.rank() == 0) {
    for (int j = 0; j < P; ++j) {
      from[size_t(j)] = 2 * (j + 1);
      for (int64_t k = 0; k < from[size_t(j)]; ++k)
        e2.push_back(TestType(code(j, 0, k)));
    }
  }
  Tensor r2 = Tensor::zeros({int64_t(e2.size())}, dtype_of<TestType>());
  c.all_to_all_v(Tensor::from_vector(s2, {int64_t(s2.size())}), to_root, r2, from);
  CHECK(first_mismatch(r2, e2) == "");

  // All counts zero, empty tensors.
  std::vector<int64_t> zeros(size_t(P), 0);
  Tensor empty_send = Tensor::zeros({0}, dtype_of<TestType>());
  Tensor empty_recv = Tensor::zeros({0, 3}, dtype_of<TestType>());
  c.all_to_all_v(empty_send, zeros, empty_recv, zeros);
  CHECK(empty_recv.numel() == 0);
}

TEMPLATE_TEST_CASE("MpiCommunicator: broadcast from a non-zero root", "[mpi]", float, int64_t) {
  Communicator& c = world();
  const int P = c.size();
  for (int root : {P - 1, 1 % P, 0}) {
    std::vector<TestType> v, expected;
    for (int i = 0; i < 6; ++i) {
      expected.push_back(TestType(7 * i + root));
      v.push_back(c.rank() == root ? expected.back() : TestType(-1));
    }
    Tensor t = Tensor::from_vector(v, {2, 3});
    c.broadcast(t, root);
    CHECK(first_mismatch(t, expected) == "");
  }
}

TEMPLATE_TEST_CASE("MpiCommunicator: all_gather", "[mpi]", float, double, int64_t) {
  Communicator& c = world();
  const int P = c.size();
  std::vector<TestType> send, expected;
  for (int k = 0; k < 4; ++k)
    send.push_back(TestType(code(c.rank(), 0, k)));
  for (int j = 0; j < P; ++j) {
    for (int k = 0; k < 4; ++k)
      expected.push_back(TestType(code(j, 0, k)));
  }
  Tensor recv = Tensor::full({P, 4}, -1.0, dtype_of<TestType>());
  c.all_gather(Tensor::from_vector(send, {4}), recv);
  CHECK(first_mismatch(recv, expected) == "");
}

TEST_CASE("MpiCommunicator: barrier and ibarrier wait for the last rank", "[mpi]") {
  Communicator& c = world();
  using Clock = std::chrono::steady_clock;
  const auto delay = std::chrono::milliseconds(200);
  for (bool non_blocking : {false, true}) {
    c.barrier();
    if (c.rank() == 0) std::this_thread::sleep_for(delay);
    const auto t0 = Clock::now();
    if (non_blocking) {
      c.ibarrier().wait();
    } else {
      c.barrier();
    }
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    // Ranks other than 0 left the first barrier at about the same time as rank 0.
    if (c.rank() != 0) CHECK(waited > 0.1);
  }
}

TEST_CASE("MpiCommunicator: every non-blocking variant", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int r = c.rank();

  std::vector<double> v{double(r + 1), -double(r + 1)};
  Tensor reduced = Tensor::from_vector(v, {2});
  c.iall_reduce(reduced).wait();
  CHECK(first_mismatch(reduced, std::vector<double>{P * (P + 1) / 2.0, -P * (P + 1) / 2.0}) == "");
  Tensor maxed = Tensor::from_vector(v, {2});
  CommRequest rm = c.iall_reduce(maxed, ReduceOp::max);
  rm.wait();
  CHECK(rm.done());
  CHECK(first_mismatch(maxed, std::vector<double>{double(P), -1.0}) == "");

  std::vector<int64_t> send, expected;
  all_to_all_buffers<int64_t>(c, 4, send, expected);
  Tensor recv = Tensor::zeros({P * 4}, DType::i64);
  // The send tensor's only handle is the one inside the request.
  CommRequest ra = c.iall_to_all(Tensor::from_vector(send, {P * 4}), recv);
  ra.wait();
  CHECK(first_mismatch(recv, expected) == "");

  std::vector<int64_t> sc, rc;
  std::vector<float> vs, ve;
  all_to_all_v_buffers(c, sc, vs, rc, ve);
  Tensor recv_v = Tensor::zeros({int64_t(ve.size())}, DType::f32);
  c.iall_to_all_v(Tensor::from_vector(vs, {int64_t(vs.size())}), sc, recv_v, rc).wait();
  CHECK(first_mismatch(recv_v, ve) == "");

  Tensor b = Tensor::full({5}, r == P - 1 ? 3.5 : 0.0, DType::f64);
  c.ibroadcast(b, P - 1).wait();
  CHECK(first_mismatch(b, std::vector<double>(5, 3.5)) == "");

  Tensor gathered = Tensor::zeros({P}, DType::i32);
  c.iall_gather(Tensor::from_vector<int32_t>({10 * r}, {1}), gathered).wait();
  std::vector<int32_t> ranks;
  for (int j = 0; j < P; ++j)
    ranks.push_back(10 * j);
  CHECK(first_mismatch(gathered, ranks) == "");

  CommRequest rb = c.ibarrier();
  rb.wait();
  CHECK(rb.done());
}

TEST_CASE("MpiCommunicator: several requests outstanding, waited out of order", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int r = c.rank();
  for (int round = 0; round < 3; ++round) {
    Tensor reduced = Tensor::full({1000}, double(r + round), DType::f64);
    std::vector<float> send, expected;
    all_to_all_buffers<float>(c, 1000, send, expected);
    Tensor recv = Tensor::zeros({P * 1000}, DType::f32);
    Tensor gathered = Tensor::zeros({P * 2}, DType::i64);
    Tensor b = Tensor::full({300}, r == 0 ? 9.0 + round : -1.0, DType::f32);
    std::vector<int64_t> sc, rc;
    std::vector<int64_t> vs, ve;
    all_to_all_v_buffers(c, sc, vs, rc, ve);
    Tensor recv_v = Tensor::zeros({int64_t(ve.size())}, DType::i64);

    CommRequest q1 = c.iall_reduce(reduced);
    CommRequest q2 = c.iall_to_all(Tensor::from_vector(send, {P * 1000}), recv);
    CommRequest q3 = c.iall_gather(Tensor::from_vector<int64_t>({r, -r}, {2}), gathered);
    CommRequest q4 = c.ibroadcast(b, 0);
    CommRequest q5 = c.iall_to_all_v(Tensor::from_vector(vs, {int64_t(vs.size())}), sc, recv_v, rc);
    CommRequest q6 = c.ibarrier();
    // Wait in an order that differs from posting (and differs per round).
    std::vector<CommRequest*> order{&q6, &q4, &q2, &q5, &q3, &q1};
    std::rotate(order.begin(), order.begin() + round, order.end());
    for (CommRequest* q : order)
      q->wait();

    const double sum = P * (P - 1) / 2.0 + double(P * round);
    CHECK(first_mismatch(reduced, std::vector<double>(1000, sum)) == "");
    CHECK(first_mismatch(recv, expected) == "");
    std::vector<int64_t> g;
    for (int j = 0; j < P; ++j) {
      g.push_back(j);
      g.push_back(-j);
    }
    CHECK(first_mismatch(gathered, g) == "");
    CHECK(first_mismatch(b, std::vector<float>(300, 9.0f + float(round))) == "");
    CHECK(first_mismatch(recv_v, ve) == "");
  }
}

TEST_CASE("MpiCommunicator: a request nobody waited for completes in its destructor", "[mpi]") {
  Communicator& c = world();
  Tensor t = Tensor::full({64}, 1.0, DType::f32);
  { CommRequest q = c.iall_reduce(t); }
  CHECK(first_mismatch(t, std::vector<float>(64, float(c.size()))) == "");
  // Polling done() alone also sees completion (the progress thread marks it).
  Tensor u = Tensor::full({64}, 2.0, DType::f32);
  CommRequest q = c.iall_reduce(u, ReduceOp::max);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!q.done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  CHECK(q.done());
  q.wait();
  CHECK(first_mismatch(u, std::vector<float>(64, 2.0f)) == "");
}

TEST_CASE("MpiCommunicator: split into even/odd ranks and into consecutive blocks", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int r = c.rank();

  SECTION("even and odd ranks, ordered by rank") {
    std::unique_ptr<Communicator> g = c.split(r % 2, r, "parity group");
    REQUIRE(g);
    CHECK(g->name() == "parity group");
    const int members = r % 2 == 0 ? (P + 1) / 2 : P / 2;
    CHECK(g->size() == members);
    CHECK(g->rank() == r / 2);
    // Sum of the world ranks of the group: r%2 + (r%2 + 2) + ...
    int64_t expected = 0;
    for (int j = r % 2; j < P; j += 2)
      expected += j;
    CHECK(all_reduce_scalar(*g, int64_t(r)) == expected);
    // all_to_all on the group: block j goes to group rank j.
    std::vector<int64_t> send, exp;
    all_to_all_buffers<int64_t>(*g, 2, send, exp);
    Tensor recv = Tensor::zeros({g->size() * 2}, DType::i64);
    g->iall_to_all(Tensor::from_vector(send, {g->size() * 2}), recv).wait();
    CHECK(first_mismatch(recv, exp) == "");
    // A world collective still works while the group exists.
    CHECK(all_reduce_scalar(c, int64_t(1)) == P);
  }
  SECTION("blocks of two consecutive ranks, ordered by decreasing rank (key)") {
    std::unique_ptr<Communicator> g = c.split(r / 2, -r, "block");
    REQUIRE(g);
    const int first = r / 2 * 2;
    const int last = std::min(first + 2, P) - 1;
    CHECK(g->size() == last - first + 1);
    CHECK(g->rank() == last - r);  // the highest world rank is group rank 0
    Tensor gathered = Tensor::zeros({g->size()}, DType::i32);
    g->all_gather(Tensor::from_vector<int32_t>({r}, {1}), gathered);
    std::vector<int32_t> exp;
    for (int j = last; j >= first; --j)
      exp.push_back(j);
    CHECK(first_mismatch(gathered, exp) == "");
    Tensor b = Tensor::full({3}, g->rank() == 0 ? double(last) : -1.0, DType::f64);
    g->broadcast(b, 0);
    CHECK(first_mismatch(b, std::vector<double>(3, double(last))) == "");
    // Split of a split.
    std::unique_ptr<Communicator> single = g->split(g->rank(), 0, "single");
    CHECK(single->size() == 1);
    CHECK(all_reduce_scalar(*single, 5.0) == 5.0);
  }
}

namespace {

// Every collective, blocking and non-blocking, on tensors of `device`; the results read back
// to the host in one list.
std::vector<double> every_collective(Communicator& c, Device device) {
  const int P = c.size();
  const int r = c.rank();
  std::vector<double> out;
  const auto read = [&](const Tensor& t) {
    for (double v : to_dtype(t, DType::f64).cpu().to_vector<double>())
      out.push_back(v);
  };
  const std::vector<double> v{double(r + 1), -double(r + 1), 0.25 * r};
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
    Tensor t = Tensor::from_vector(v, {3}, device);
    c.all_reduce(t, op);
    read(t);
    Tensor u = Tensor::from_vector(v, {3}, device);
    c.iall_reduce(u, op).wait();
    read(u);
  }
  std::vector<float> send, expected;
  all_to_all_buffers<float>(c, 3, send, expected);
  Tensor s = Tensor::from_vector(send, {P, 3}, device);
  Tensor recv = Tensor::full({P * 3}, -1.0, DType::f32, device);
  c.all_to_all(s, recv);
  read(recv);
  Tensor irecv = Tensor::full({P * 3}, -1.0, DType::f32, device);
  c.iall_to_all(s, irecv).wait();
  read(irecv);
  read(s);  // left alone
  std::vector<int64_t> sc, rc;
  std::vector<int64_t> vs, ve;
  all_to_all_v_buffers(c, sc, vs, rc, ve);
  Tensor sv = Tensor::from_vector(vs, {int64_t(vs.size())}, device);
  Tensor recv_v = Tensor::zeros({int64_t(ve.size())}, DType::i64, device);
  c.all_to_all_v(sv, sc, recv_v, rc);
  read(recv_v);
  Tensor irecv_v = Tensor::zeros({int64_t(ve.size())}, DType::i64, device);
  c.iall_to_all_v(sv, sc, irecv_v, rc).wait();
  read(irecv_v);
  for (int root : {0, P - 1}) {
    Tensor b = Tensor::full({4}, r == root ? 2.5 + root : -1.0, DType::f64, device);
    c.broadcast(b, root);
    read(b);
    Tensor ib = Tensor::full({4}, r == root ? 7.0 + root : -1.0, DType::f64, device);
    c.ibroadcast(ib, root).wait();
    read(ib);
  }
  Tensor mine = Tensor::from_vector<int32_t>({10 * r, r}, {2}, device);
  Tensor gathered = Tensor::zeros({P, 2}, DType::i32, device);
  c.all_gather(mine, gathered);
  read(gathered);
  Tensor igathered = Tensor::zeros({2 * P}, DType::i32, device);
  c.iall_gather(mine, igathered).wait();
  read(igathered);
  // Completion seen through done() alone also delivers the result to the device tensor.
  Tensor polled = Tensor::from_vector(v, {3}, device);
  CommRequest q = c.iall_reduce(polled);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!q.done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  read(polled);
  q.wait();
  return out;
}

}  // namespace

TEST_CASE("MpiCommunicator: tensors the host cannot read are staged and give the host results",
          "[mpi]") {
  Communicator& c = world();
  const std::vector<double> host = every_collective(c, kCpu);
  const std::vector<double> strict = every_collective(c, kCpuStrict);
  CHECK(host.size() == strict.size());
  CHECK(strict == host);
  // A non-host all-reduce of a gradient-norm-like scalar equals the host one.
  Tensor x = Tensor::from_vector<double>({1.5 * (c.rank() + 1)}, {}, kCpuStrict);
  c.all_reduce(x);
  CHECK(x.cpu().item() == Approx(1.5 * c.size() * (c.size() + 1) / 2.0));
}

TEST_CASE("MpiCommunicator: communicators are created and freed (RAII)", "[mpi]") {
  int created = 0;
  for (int i = 0; i < 64; ++i) {
    MpiCommunicator dup(MPI_COMM_WORLD, "dup " + std::to_string(i));
    created += dup.size() == world().size();
    int cmp = MPI_UNEQUAL;
    MPI_Comm_compare(dup.handle(), MPI_COMM_WORLD, &cmp);
    CHECK(cmp == MPI_CONGRUENT);
  }
  CHECK(created == 64);
}

TEST_CASE("MpiCommunicator: argument errors throw on every rank before any MPI call", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const std::string where = "on communicator 'world' (rank " + std::to_string(c.rank()) + " of " +
                            std::to_string(P) + ")";
  Tensor send = Tensor::zeros({P * 4}, DType::f32);
  Tensor small = Tensor::zeros({P * 4 + 1}, DType::f32);
  Tensor same = Tensor::zeros({P * 4}, DType::f32);
  Tensor not_p_times = Tensor::zeros({P * P * 4 + 4}, DType::f32);
  Tensor doubles = Tensor::zeros({P * 4}, DType::f64);

  const std::string m1 = invalid_argument_message([&] { c.all_to_all(send, small); });
  CHECK_THAT(m1, Contains("all_to_all " + where) &&
                     Contains("has " + std::to_string(P * 4 + 1) + " elements, expected " +
                              std::to_string(P * 4)));
  CHECK(m1.find('\n') == std::string::npos);
  CHECK_THAT(invalid_argument_message([&] { c.iall_to_all(send, small); }),
             Contains("iall_to_all " + where));
  if (P > 1) {
    Tensor odd = Tensor::zeros({P * 4 + 1}, DType::f32);
    CHECK_THAT(invalid_argument_message([&] { c.all_to_all(odd, small); }),
               Contains("not divisible by the communicator size " + std::to_string(P)));
  }
  CHECK_THAT(invalid_argument_message([&] { c.all_to_all(send, doubles); }),
             Contains("different dtypes"));
  CHECK_THAT(invalid_argument_message([&] { c.all_gather(send, not_p_times); }),
             Contains("all_gather " + where));
  CHECK_THAT(invalid_argument_message([&] { c.iall_gather(send, small); }),
             Contains("iall_gather " + where));
  CHECK_THAT(invalid_argument_message([&] {
               c.all_to_all_v(send, std::vector<int64_t>(size_t(P + 1), 0), same,
                              std::vector<int64_t>(size_t(P), 0));
             }),
             Contains("all_to_all_v " + where) && Contains("expected one per rank"));
  CHECK_THAT(invalid_argument_message([&] {
               std::vector<int64_t> counts(size_t(P), 4);
               c.iall_to_all_v(send, counts, small, counts);
             }),
             Contains("iall_to_all_v " + where) && Contains("recv_counts"));
  CHECK_THAT(invalid_argument_message([&] { c.broadcast(send, P); }),
             Contains("broadcast " + where) && Contains("root " + std::to_string(P)));
  CHECK_THAT(invalid_argument_message([&] { c.ibroadcast(send, -1); }),
             Contains("ibroadcast " + where));
  Tensor bf = Tensor::zeros({4}, DType::bf16);
  CHECK_THAT(invalid_argument_message([&] { c.all_reduce(bf); }),
             Contains("all_reduce " + where) && Contains("bf16"));
  CHECK_THAT(invalid_argument_message([&] { c.iall_reduce(bf); }), Contains("iall_reduce"));
  Tensor strided = Tensor::zeros({4, P * 2}, DType::f32).transpose(0, 1);
  CHECK_THAT(invalid_argument_message([&] { c.all_reduce(strided); }), Contains("not contiguous"));
  CHECK_THAT(invalid_argument_message([&] { c.split(-3, 0, "bad"); }),
             Contains("split " + where) && Contains("color -3"));

  // Counts that do not fit in an int (a view over a small storage: checked, never touched).
  const int64_t huge = (int64_t(1) << 31) + 8 * P;
  Tensor big = Tensor::view_of(Tensor::zeros({64}, DType::u8).storage(), {huge}, {1}, 0, DType::u8);
  CHECK_THAT(invalid_argument_message([&] { c.all_reduce(big); }),
             Contains("all_reduce " + where) && Contains("must fit in int") &&
                 Contains(std::to_string(huge)));
  CHECK_THAT(invalid_argument_message([&] { c.ibroadcast(big, 0); }), Contains("must fit in int"));

  // Nobody hung and the ranks are still in step.
  CHECK(all_reduce_scalar(c, int64_t(1)) == P);
}

TEST_CASE("VMOE_MPI_CHECK throws MpiError with the call, MPI's message and file:line", "[mpi]") {
  auto& c = dynamic_cast<MpiCommunicator&>(world());
  int x = 0;
  std::string message;
  try {
    // Open MPI checks the root before communicating, on every rank.
    VMOE_MPI_CHECK(MPI_Bcast(&x, 1, MPI_INT, c.size() + 5, c.handle()));
  } catch (const MpiError& e) {
    message = e.what();
  }
  CHECK_THAT(message, Contains("MPI call failed: MPI_Bcast(&x, 1, MPI_INT, c.size() + 5, "
                               "c.handle())") &&
                          Contains("root") && Contains("test_communicator_mpi.cpp:"));
  CHECK(message.find('\n') == std::string::npos);
  CHECK(all_reduce_scalar(c, int64_t(1)) == c.size());
}

TEST_CASE("Progress thread: an 8 MB iall_to_all completes while the caller computes", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int r = c.rank();
  const int64_t n = int64_t(1) << 21;  // int32 elements: 8 MB per rank
  const int64_t b = n / P;
  // Element k of the block from rank src to rank dst.
  const auto value = [](int src, int dst, int64_t k) {
    return int32_t(((src * 4 + dst) << 22) + k);
  };
  std::vector<int32_t> values(static_cast<size_t>(n));
  for (int j = 0; j < P; ++j) {
    for (int64_t k = 0; k < b; ++k)
      values[size_t(j * b + k)] = value(r, j, k);
  }
  Tensor send = Tensor::from_vector(values, {n});
  Tensor recv = Tensor::zeros({n}, DType::i32);
  c.barrier();

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  CommRequest q = c.iall_to_all(send, recv);
  // Compute without calling MPI (done() only reads a flag the progress thread sets).
  bool done_while_computing = false;
  volatile double sink = 0;
  while (Clock::now() - t0 < std::chrono::seconds(60)) {
    double s = sink;
    for (int i = 0; i < 20000; ++i)
      s += std::sqrt(double(i) + s * 1e-12);
    sink = s;
    if (q.done()) {
      done_while_computing = true;
      break;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  q.wait();
  INFO("rank " << r << "/" << P << ": completed after " << seconds << " s of computing");
  CHECK(done_while_computing);
  int64_t wrong = 0;
  const std::vector<int32_t> got = recv.cpu().to_vector<int32_t>();
  for (int j = 0; j < P; ++j) {
    for (int64_t k = 0; k < b; ++k)
      wrong += got[size_t(j * b + k)] != value(j, r, k);
  }
  CHECK(wrong == 0);
}

TEST_CASE("Progress thread: no busy core while idle or while a request is outstanding", "[mpi]") {
  Communicator& c = world();
  const int P = c.size();
  const int r = c.rank();
  // Idle: nothing outstanding, the progress thread sleeps on its condition variable.
  c.barrier();
  double cpu0 = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double idle_cpu = cpu_seconds() - cpu0;
  CHECK(idle_cpu < 0.1);

  // Outstanding: rank 0 joins the ibarrier 500 ms late; meanwhile the others' requests are
  // polled with back-off.
  c.barrier();
  if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cpu0 = cpu_seconds();
  CommRequest q = c.ibarrier();
  bool done_early = false;
  double polling_cpu = 0;
  if (r != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    polling_cpu = cpu_seconds() - cpu0;
    done_early = q.done();
  }
  q.wait();
  INFO("rank " << r << "/" << P << ": CPU " << idle_cpu << " s idle, " << polling_cpu
               << " s while polling for 0.25 s");
  CHECK_FALSE(done_early);
  CHECK(polling_cpu < 0.1);
}
