// The process's MPI lifetime: whether vmoe was started as an MPI job, MPI_Init_thread /
// MPI_Finalize (RAII), the world communicator, and aborting the whole job on an error.
// Started plainly (not by mpirun / mpiexec / srun), vmoe never calls MPI_Init and the world is
// a single-process LocalCommunicator.
#pragma once
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace vmoe {

// True when the environment says this process is one rank of a job started by mpirun /
// mpiexec (Open MPI: OMPI_COMM_WORLD_SIZE; PMIx: PMIX_RANK; PMI-1/2, MPICH/Intel MPI:
// PMI_RANK or PMI_SIZE) or by srun with more than one task (SLURM_NTASKS > 1 and
// SLURM_PROCID set).
bool launched_by_mpi();

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

// Prints "vmoe: error: <message>" on stderr (message prefixed "[rank r/P] " when the job has
// more than one rank), flushes stdout and stderr, and ends the whole job: MPI_Abort on
// MPI_COMM_WORLD with code 1 when MPI is initialised, std::_Exit(1) otherwise.
[[noreturn]] void abort_job(const std::string& message);

}  // namespace vmoe
