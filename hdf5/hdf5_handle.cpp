// HDF5 process setup, error-stack formatting and the failure path of VMOE_H5_CHECK.
#include "hdf5/hdf5_handle.h"

#include <string>

namespace vmoe {

namespace {

// The outermost and innermost entries of an error stack walk.
struct StackEnds {
  std::string outer;
  std::string inner;
  int count = 0;
};

std::string describe(const H5E_error2_t* e) {
  std::string s = e->func_name ? std::string(e->func_name) + "(): " : std::string();
  s += e->desc ? e->desc : "(no description)";
  // Keep the message on one line.
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

herr_t walk_entry(unsigned /*n*/, const H5E_error2_t* e, void* data) {
  auto* ends = static_cast<StackEnds*>(data);
  if (ends->count == 0) ends->outer = describe(e);
  ends->inner = describe(e);
  ++ends->count;
  return 0;
}

}  // namespace

std::recursive_mutex& hdf5_mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

void hdf5_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    Hdf5Lock lock;
    if (H5open() < 0) throw Hdf5Error("cannot initialise the HDF5 library (H5open failed)");
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

std::string hdf5_library_text() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  std::string text =
      std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
#ifdef H5_HAVE_PARALLEL
  text += ", parallel";
#else
  text += ", serial";
#endif
  return text;
}

std::string hdf5_error_stack() {
  Hdf5Lock lock;
  // Copies the current stack and clears it.
  const hid_t stack = H5Eget_current_stack();
  if (stack < 0) return {};
  StackEnds ends;
  H5Ewalk2(stack, H5E_WALK_DOWNWARD, walk_entry, &ends);
  H5Eclose_stack(stack);
  if (ends.count == 0) return {};
  if (ends.count == 1 || ends.inner == ends.outer) return ends.outer;
  return ends.outer + " [cause: " + ends.inner + "]";
}

namespace detail {

void throw_hdf5_error(const char* call, const char* file, int line) {
  // "…/hdf5/hdf5_file.cpp" -> "hdf5/hdf5_file.cpp".
  std::string where(file);
  const size_t last = where.rfind('/');
  if (last != std::string::npos && last > 0) {
    const size_t before = where.rfind('/', last - 1);
    if (before != std::string::npos) where = where.substr(before + 1);
  }
  std::string msg =
      std::string("HDF5 call failed: ") + call + " at " + where + ":" + std::to_string(line);
  const std::string stack = hdf5_error_stack();
  if (!stack.empty()) msg += ": " + stack;
  throw Hdf5Error(msg);
}

}  // namespace detail

}  // namespace vmoe
