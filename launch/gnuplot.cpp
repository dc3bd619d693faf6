// Runs gnuplot as a child process on a script in a temporary folder (see gnuplot.h).
#include "launch/gnuplot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vmoe {

namespace fs = std::filesystem;

namespace {

// The gnuplot executable found on PATH, or "".
std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / "gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// A temporary folder, removed with everything in it when this goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "vmoe_gnuplot_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("cannot create a temporary folder for gnuplot in " +
                               fs::temp_directory_path().string());
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write '" + path.string() + "' for gnuplot");
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s)
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// stderr text on one line: lines joined with " | ", blank lines left out.
std::string one_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, joined;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r^") == std::string::npos) continue;
    if (!joined.empty()) joined += " | ";
    joined += line;
  }
  return joined;
}

}  // namespace

std::string gnuplot_png_terminal(int width, int height) {
  return "set terminal pngcairo noenhanced size " + std::to_string(width) + "," +
         std::to_string(height) + " font 'sans,10'\n";
}

std::string gnuplot_quote(const std::string& text) {
  std::string q = "'";
  for (char c : text)
    q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

void run_gnuplot(const std::string& script, const std::map<std::string, std::string>& data_files,
                 const std::vector<std::string>& outputs) {
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty())
    throw std::runtime_error(
        "gnuplot not found on PATH: pictures need the Debian package gnuplot-nox "
        "(apt-get install gnuplot-nox)");
  TempDir dir;
  for (const auto& [name, text] : data_files)
    write_file(dir.path() / name, text);
  write_file(dir.path() / "script.gp", "cd " + gnuplot_quote(dir.path().string()) + "\n" + script);
  for (const std::string& o : outputs)
    fs::remove(o);
  const fs::path err = dir.path() / "stderr.txt";
  const std::string command = shell_quote(gnuplot) + " " +
                              shell_quote((dir.path() / "script.gp").string()) + " >/dev/null 2>" +
                              shell_quote(err.string()) + " </dev/null";
  const int status = std::system(command.c_str());
  std::ifstream err_in(err);
  std::ostringstream err_text;
  err_text << err_in.rdbuf();
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    throw std::runtime_error("gnuplot failed (exit " + std::to_string(code) +
                             "): " + one_line(err_text.str()));
  }
  for (const std::string& o : outputs) {
    std::error_code ec;
    if (!fs::exists(o) || fs::file_size(o, ec) == 0)
      throw std::runtime_error("gnuplot wrote no picture '" + o + "': " + one_line(err_text.str()));
  }
}

}  // namespace vmoe
