// The one checking macro for MPI calls (VMOE_MPI_CHECK) and the exception it throws. MPI only
// returns error codes on communicators whose error handler is MPI_ERRORS_RETURN; vmoe sets
// it on MPI_COMM_WORLD (MpiRuntime) and on every communicator it creates (MpiCommunicator).
#pragma once
#include <mpi.h>

#include <stdexcept>
#include <string>

namespace vmoe {

// Any failed MPI call.
class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// "MPI_Bcast: MPI_ERR_ROOT: invalid root" for an MPI error code.
inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS || length <= 0) {
    return "MPI error code " + std::to_string(code);
  }
  std::string s(text, size_t(length));
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

[[noreturn]] inline void throw_mpi_error(int code, const char* call, const char* file, int line) {
  // ".../parallel/mpi_communicator.cpp" -> "parallel/mpi_communicator.cpp".
  std::string where(file);
  const size_t last = where.rfind('/');
  if (last != std::string::npos && last > 0) {
    const size_t before = where.rfind('/', last - 1);
    if (before != std::string::npos) where = where.substr(before + 1);
  }
  throw MpiError(std::string("MPI call failed: ") + call + ": " + mpi_error_text(code) + " at " +
                 where + ":" + std::to_string(line));
}

}  // namespace detail

}  // namespace vmoe

// Evaluates an MPI call; unless it returns MPI_SUCCESS, throws vmoe::MpiError with one line
// naming the call, MPI's description of the error code, and the source file and line.
#define VMOE_MPI_CHECK(call)                                                    \
  do {                                                                          \
    const int vmoe_mpi_rc_ = (call);                                            \
    if (vmoe_mpi_rc_ != MPI_SUCCESS) {                                          \
      ::vmoe::detail::throw_mpi_error(vmoe_mpi_rc_, #call, __FILE__, __LINE__); \
    }                                                                           \
  } while (false)
