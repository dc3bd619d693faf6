// MPI start-up and shut-down, the world communicator, and job-wide abort.
#include "parallel/mpi_runtime.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "core/error_text.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_check.h"
#include "parallel/mpi_communicator.h"

namespace vmoe {

namespace {

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

// This process's rank in the job as the launcher's environment gives it (Open MPI, PMIx, PMI,
// Slurm); 0 when none does.
long job_rank_from_environment() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (has_env(name)) return std::strtol(std::getenv(name), nullptr, 10);
  return 0;
}

// An error line keeps at most this many characters of its message (head and tail of a longer
// one): whatever a message echoes from the input, no line repeats it unbounded.
constexpr size_t kMaxErrorChars = 900;

// How long a rank that leaves the report of a shared error to rank 0 waits for the launcher to
// end it (it does once rank 0 exits); bounded for a launcher that does not (srun's default).
constexpr int kSilentRankWaitSeconds = 10;

// MPI is usable: initialised and not yet finalised.
bool mpi_active() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

}  // namespace

std::string mpi_library_text() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(text, &length);
  std::string out(text, size_t(std::max(length, 0)));
  out = out.substr(0, out.find_first_of("\r\n"));
  return out.substr(0, out.find(", package:"));
}

bool launched_by_mpi() {
  if (has_env("OMPI_COMM_WORLD_SIZE") || has_env("PMIX_RANK") || has_env("PMI_RANK") ||
      has_env("PMI_SIZE")) {
    return true;
  }
  if (has_env("SLURM_PROCID") && has_env("SLURM_NTASKS")) {
    return std::strtol(std::getenv("SLURM_NTASKS"), nullptr, 10) > 1;
  }
  return false;
}

MpiRuntime::MpiRuntime() {
  int initialized = 0;
  int finalized = 0;
  VMOE_MPI_CHECK(MPI_Initialized(&initialized));
  VMOE_MPI_CHECK(MPI_Finalized(&finalized));
  if (finalized) {
    throw MpiError(
        "MpiRuntime: MPI was already finalised in this process (create one MpiRuntime "
        "per process, at the start of main)");
  }
  if (!initialized && !launched_by_mpi()) {
    world_ = std::make_shared<LocalCommunicator>("world");
    return;
  }
  // On an error below MPI stays initialised: the caller reports it with abort_job, whose
  // MPI_Abort ends every rank (MPI_Finalize could wait for ranks that will never arrive).
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    VMOE_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
    owns_mpi_ = true;
    VMOE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  } else {
    VMOE_MPI_CHECK(MPI_Query_thread(&provided));
  }
  using_mpi_ = true;
  if (provided < MPI_THREAD_MULTIPLE) {
    throw MpiError(std::string("MpiRuntime: vmoe needs MPI_THREAD_MULTIPLE (communication runs "
                               "on a progress thread), but the MPI library provides ") +
                   detail::mpi_thread_level_name(provided));
  }
  auto world = std::make_shared<MpiCommunicator>(MPI_COMM_WORLD, "world");
  MPI_Comm node = MPI_COMM_NULL;
  VMOE_MPI_CHECK(MPI_Comm_split_type(world->handle(), MPI_COMM_TYPE_SHARED, world->rank(),
                                     MPI_INFO_NULL, &node));
  const int rc = MPI_Comm_size(node, &local_ranks_);
  MPI_Comm_free(&node);
  VMOE_MPI_CHECK(rc);
  world_ = std::move(world);
}

MpiRuntime::~MpiRuntime() {
  world_.reset();
  if (!using_mpi_) return;
  // Communicators still alive elsewhere skip MPI_Comm_free once MPI is finalised.
  detail::stop_mpi_progress();
  if (owns_mpi_ && mpi_active()) MPI_Finalize();
}

void abort_job(const std::string& message, AbortCause cause) {
  // Two threads may fail at once (the NCCL watchdog and the main thread): the first reports,
  // the other waits for the process to end, so a rank prints one line.
  static std::atomic<bool> aborting{false};
  if (aborting.exchange(true)) {
    for (;;)
      std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const bool mpi = mpi_active();
  int rank = 0;
  int size = 1;
  if (mpi) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  } else if (launched_by_mpi()) {
    // Not initialised yet (e.g. a command-line error): every rank has the same error, rank 0
    // of the job reports it. The others wait before leaving: a rank that ends first with a
    // failure makes the launcher kill the job, rank 0 possibly before its line is out.
    if (job_rank_from_environment() > 0) {
      std::this_thread::sleep_for(std::chrono::seconds(kSilentRankWaitSeconds));
      std::_Exit(1);
    }
  }
  if (size > 1) {
    // Give a rank that reports first (rank 0 at once, then rank by rank) the time to end this
    // one through MPI_Abort; rank 0 does not wait on an error of its own.
    double quiet = rank == 0 ? 0.0 : 1.0 + 0.5 * std::min(rank - 1, 16);
    if (cause == AbortCause::communication) quiet += kCommunicationQuietSeconds;
    if (quiet > 0) std::this_thread::sleep_for(std::chrono::duration<double>(quiet));
  }
  std::string text = message;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  std::string line = "vmoe: error: ";
  if (size > 1) line += "[rank " + std::to_string(rank) + "/" + std::to_string(size) + "] ";
  line += error_text(text, kMaxErrorChars) + "\n";
  std::cout.flush();
  std::fflush(stdout);
  std::fputs(line.c_str(), stderr);
  std::cerr.flush();
  std::fflush(stderr);
  if (mpi) MPI_Abort(MPI_COMM_WORLD, 1);
  // Not std::exit: library clean-up at exit (HDF5 flushing a file whose write just failed,
  // threads still running) must not turn a clean error into a crash. Output is flushed above.
  std::_Exit(1);
}

void abort_job(const std::exception& error) {
  abort_job(error.what(), dynamic_cast<const MpiError*>(&error) != nullptr
                              ? AbortCause::communication
                              : AbortCause::error);
}

}  // namespace vmoe
