// Workdir preparation and small atomic text files.
#include "launch/workdir.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vmoe {

void prepare_workdir(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("--workdir must not be empty");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create workdir '" + dir + "': " + ec.message());
  if (!std::filesystem::is_directory(dir))
    throw std::runtime_error("workdir '" + dir + "' exists and is not a directory");
  const std::string probe = dir + "/.write_test";
  std::ofstream out(probe);
  if (!out)
    throw std::runtime_error("workdir '" + dir + "' is not writable: " + std::strerror(errno));
  out.close();
  std::filesystem::remove(probe, ec);
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec)
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace vmoe
