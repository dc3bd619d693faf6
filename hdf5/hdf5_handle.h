// RAII ownership of HDF5 identifiers (hid_t), the one checking macro for HDF5 calls
// (VMOE_H5_CHECK), and the one process-wide lock every HDF5 call in the project is made under.
// Part of the one HDF5 library (hdf5/) below data/ and parallel/.
#pragma once
#include <hdf5.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace vmoe {

// Any failed HDF5 call, or an HDF5 file that does not hold what was asked for.
class Hdf5Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The HDF5 build used here is not thread-safe (no H5_HAVE_THREADSAFE), so every HDF5 call made
// through these wrappers holds this one recursive process-wide mutex. Code that calls HDF5
// directly takes an `Hdf5Lock` for the duration of the calls.
std::recursive_mutex& hdf5_mutex();

class Hdf5Lock {
 public:
  Hdf5Lock() : lock_(hdf5_mutex()) {}

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

// Initialises HDF5 once per process and turns off its automatic printing of error stacks to
// stderr (failures become Hdf5Error exceptions instead). Idempotent and cheap; every wrapper
// entry point calls it.
void hdf5_init();

// "1.10.8, parallel": the HDF5 library this process runs with (`vmoe info`).
std::string hdf5_library_text();

// One line describing the current HDF5 error stack: the outermost entry (the API call that
// failed) and, if different, the innermost one (the cause). Clears the stack. Empty if the
// stack holds nothing.
std::string hdf5_error_stack();

namespace detail {

[[noreturn]] void throw_hdf5_error(const char* call, const char* file, int line);

// Returns `result` unless it is negative, the failure value of every HDF5 call that returns
// herr_t, hid_t, htri_t, hssize_t or ssize_t.
template <typename T>
T hdf5_check(T result, const char* call, const char* file, int line) {
  static_assert(std::is_signed_v<T>, "VMOE_H5_CHECK needs a call that fails with a negative value");
  if (result < 0) throw_hdf5_error(call, file, line);
  return result;
}

}  // namespace detail

// Evaluates an HDF5 call and yields its result; on failure throws Hdf5Error naming the call,
// the source file and line, and HDF5's own error message. Call with the Hdf5Lock held.
#define VMOE_H5_CHECK(call) ::vmoe::detail::hdf5_check((call), #call, __FILE__, __LINE__)

// A move-only owner of one HDF5 identifier, closed with `Close` (H5Fclose, H5Dclose, ...).
// The close function is part of the type, so a dataset cannot end up in a file handle.
template <herr_t (*Close)(hid_t)>
class H5Id {
 public:
  H5Id() = default;
  // Takes ownership of `id`; typically `H5DatasetId ds{VMOE_H5_CHECK(H5Dopen2(...))}`.
  explicit H5Id(hid_t id) : id_(id) {}
  ~H5Id() { reset(); }

  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  H5Id(H5Id&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  H5Id& operator=(H5Id&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

  // Gives up ownership without closing.
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }

  // Closes the identifier, ignoring failure (destructors cannot report it).
  void reset() noexcept {
    if (id_ >= 0) {
      Hdf5Lock lock;
      Close(id_);
      H5Eclear2(H5E_DEFAULT);
    }
    id_ = H5I_INVALID_HID;
  }

  // Closes the identifier and throws Hdf5Error if that fails. Closing a file flushes it, so
  // a writer that must know its data reached the disk closes explicitly.
  void close() {
    if (id_ < 0) return;
    Hdf5Lock lock;
    const hid_t id = std::exchange(id_, H5I_INVALID_HID);
    VMOE_H5_CHECK(Close(id));
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using H5FileId = H5Id<H5Fclose>;
using H5GroupId = H5Id<H5Gclose>;
using H5DatasetId = H5Id<H5Dclose>;
using H5SpaceId = H5Id<H5Sclose>;
using H5TypeId = H5Id<H5Tclose>;
using H5AttrId = H5Id<H5Aclose>;
using H5PlistId = H5Id<H5Pclose>;
using H5ObjectId = H5Id<H5Oclose>;  // a group, dataset or named datatype opened with H5Oopen

}  // namespace vmoe
