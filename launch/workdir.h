// The run directory: created if needed and checked writable before any work starts.
#pragma once
#include <string>

namespace vmoe {

// Creates `dir` (and parents) and proves it writable; throws naming the directory otherwise.
void prepare_workdir(const std::string& dir);
// Writes `text` to `path` atomically (temporary file + rename).
void write_text_file(const std::string& path, const std::string& text);
std::string read_text_file(const std::string& path);

}  // namespace vmoe
