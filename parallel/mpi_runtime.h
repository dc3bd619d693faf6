// The process's MPI lifetime: whether vmoe was started as an MPI job, MPI_Init_thread /
// MPI_Finalize (RAII), the world communicator, and aborting the whole job on an error.
// Started plainly (not by mpirun / mpiexec / srun), vmoe never calls MPI_Init and the world is
// a single-process LocalCommunicator.
#pragma once
#include <exception>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace vmoe {

// True when the environment says this process is one rank of a job started by mpirun /
// mpiexec (Open MPI: OMPI_COMM_WORLD_SIZE; PMIx: PMIX_RANK; PMI-1/2, MPICH/Intel MPI:
// PMI_RANK or PMI_SIZE) or by srun with more than one task (SLURM_NTASKS > 1 and
// SLURM_PROCID set).
bool launched_by_mpi();

// The first line of the MPI library's version text ("Open MPI v4.1.4, package: ..."); callable
// without MPI_Init (`vmoe info`).
std::string mpi_library_text();

// Create one, first thing in main(), and keep it alive until every communicator and request
// is gone. If launched_by_mpi(), initialises MPI with MPI_THREAD_MULTIPLE (throws MpiError if
// the library provides less) and sets MPI_ERRORS_RETURN on MPI_COMM_WORLD; the destructor
// stops the communicators' progress thread and calls MPI_Finalize. If MPI was already
// initialised by someone else, it is used as it is and not finalised here.
class MpiRuntime {
 public:
  MpiRuntime();
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  // True when this process runs under MPI (the world is an MpiCommunicator).
  bool using_mpi() const { return using_mpi_; }
  // All ranks of the job, named "world": an MpiCommunicator over MPI_COMM_WORLD, or a
  // LocalCommunicator when not under MPI. The same object on every call.
  std::shared_ptr<Communicator> world() const { return world_; }
  // Number of ranks on this node (MPI_COMM_TYPE_SHARED); 1 when not under MPI.
  int local_ranks() const { return local_ranks_; }

 private:
  bool using_mpi_ = false;
  bool owns_mpi_ = false;  // this object called MPI_Init_thread and will call MPI_Finalize
  int local_ranks_ = 1;
  std::shared_ptr<Communicator> world_;
};

// What an error reported by abort_job is: an error of this rank, or a failed MPI call, which in
// a multi-rank job is most often the consequence of another rank's abort (a broken collective).
enum class AbortCause : unsigned char { error, communication };

// Prints "vmoe: error: <message>" on stderr as one line (message prefixed "[rank r/P] " when the
// job has more than one rank; control characters escaped, cut at a few thousand characters),
// flushes stdout and stderr, and ends the whole job: MPI_Abort on MPI_COMM_WORLD with code 1
// when MPI is initialised, std::_Exit(1) otherwise.
// The line is printed once per job, by the failing rank: rank 0 reports an error at once; the
// other ranks wait a moment first (longer the higher the rank), so that when every rank fails
// alike, rank 0's abort ends them before they print; a communication error waits longer still
// (kCommunicationQuietSeconds), so that ranks whose collective another rank's abort broke are
// ended silently, and reports only if no abort came. Before MPI is initialised (a command-line
// error under mpirun), only rank 0 of the job prints.
[[noreturn]] void abort_job(const std::string& message, AbortCause cause = AbortCause::error);
// abort_job(error.what()), with AbortCause::communication when `error` is an MpiError.
[[noreturn]] void abort_job(const std::exception& error);

inline constexpr double kCommunicationQuietSeconds = 10.0;

}  // namespace vmoe
