// The Catch2 main of MPI tests (vmoe_add_mpi_test): initialises MPI through MpiRuntime, which
// stays alive for the whole run, runs the test cases on every rank (each rank reports its own
// failures), and exits non-zero on every rank when an assertion failed on any rank.
// VMOE_TEST_DEVICE sets the default device as in test_main.cpp; a missing device aborts the job
// on every rank with the reason.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include "core/cpu/blas_kernels.h"
#include "parallel/mpi_runtime.h"
#include "test/core/device_testing.h"

namespace vmoe {

namespace {
MpiRuntime* g_runtime = nullptr;
}  // namespace

// The runtime of this test process; declared by the MPI test files that use it.
MpiRuntime& test_mpi_runtime() {
  if (g_runtime == nullptr)
    throw std::logic_error("test_mpi_runtime(): no MpiRuntime (not in main)");
  return *g_runtime;
}

}  // namespace vmoe

int main(int argc, char* argv[]) {
  vmoe::cpu::reexec_if_openblas_misdetected(argv);
  int exit_code = 0;
  {
    std::unique_ptr<vmoe::MpiRuntime> runtime;
    try {
      runtime = std::make_unique<vmoe::MpiRuntime>();
    } catch (const std::exception& e) {
      vmoe::abort_job(e.what());
    }
    vmoe::g_runtime = runtime.get();
    try {
      vmoe::testing::set_test_device_from_env();
    } catch (const std::exception& e) {
      vmoe::abort_job(e.what());
    }
    std::shared_ptr<vmoe::Communicator> world = runtime->world();
    const std::string rank_tag =
        "[rank " + std::to_string(world->rank()) + "/" + std::to_string(world->size()) + "]";

    Catch::Session session;
    // mpiexec gives every rank a pseudo-terminal, whatever the output finally goes to.
    session.configData().useColour = Catch::UseColour::No;
    int failed = session.applyCommandLine(argc, argv);
    if (failed == 0) {
      // Shown in the header of this rank's failure report.
      session.configData().processName = std::string(argv[0]) + " " + rank_tag;
      try {
        failed = session.run();
      } catch (const std::exception& e) {
        vmoe::abort_job(std::string("test run failed: ") + e.what());
      }
    }
    if (failed != 0) {
      std::fprintf(stderr, "%s %d test case(s) failed on this rank\n", rank_tag.c_str(), failed);
    }
    int64_t failing_ranks = 0;
    try {
      failing_ranks = vmoe::all_reduce_scalar(*world, int64_t(failed != 0 ? 1 : 0));
    } catch (const std::exception& e) {
      vmoe::abort_job(std::string("combining the test results failed: ") + e.what());
    }
    if (failing_ranks > 0 && world->rank() == 0) {
      std::fprintf(stderr, "%lld of %d rank(s) had failing test cases\n",
                   static_cast<long long>(failing_ranks), world->size());
    }
    std::fflush(stdout);
    std::fflush(stderr);
    exit_code = failing_ranks > 0 ? 1 : 0;
    world.reset();
    vmoe::g_runtime = nullptr;
  }  // MPI_Finalize
  return exit_code;
}
