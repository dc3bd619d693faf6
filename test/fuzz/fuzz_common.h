// Shared by the libFuzzer targets: the input as a temporary file (for readers that take a path)
// and the rule every target applies. A reader may reject input only with an exception of its
// own error kind (a std::runtime_error: DataError, ConfigError, Hdf5Error) carrying a message;
// anything else (std::bad_alloc, std::logic_error such as out_of_range, an empty message) is a
// finding, as are crashes, sanitizer reports, timeouts and running out of memory.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>

namespace vmoe::fuzz {

// A folder of its own under the temp dir for this process, removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("vmoe_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(
          std::filesystem::temp_directory_path() / ("vmoe_fuzz_" + std::to_string(::getpid())),
          ignored);
    });
    return d;
  }();
  return dir;
}

// Writes `size` bytes to `name` inside scratch_dir() and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path.string();
}

[[noreturn]] inline void finding(const char* kind, const char* what) {
  std::fprintf(stderr, "FUZZ FINDING: %s: %s\n", kind, what);
  std::abort();
}

// Runs `f`; a std::runtime_error with a message is a clean rejection, anything else aborts.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::bad_alloc& e) {
    finding("std::bad_alloc (a size was not bounded before allocating)", e.what());
  } catch (const std::logic_error& e) {
    finding("std::logic_error (a raw library error, not a checked one)", e.what());
  } catch (const std::runtime_error& e) {
    if (e.what()[0] == '\0') finding("runtime_error", "empty message");
  } catch (const std::exception& e) {
    finding("unexpected exception", e.what());
  }
}

}  // namespace vmoe::fuzz
