// Runs gnuplot as a child process (no shell) on a script in a private temporary folder, and
// copies the pictures it writes there to their destinations (see gnuplot.h).
#include "launch/gnuplot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/error_text.h"

extern char** environ;

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

// A private (mode 0700) temporary folder, removed with everything in it when this goes out of
// scope.
class TempDir {
 public:
  TempDir() {
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string pattern = (base / "vmoe_gnuplot_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::runtime_error("cannot create a temporary folder for gnuplot in " +
                               quote_for_error(base.string()) + ": " + std::strerror(errno));
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
  if (!out)
    throw std::runtime_error("cannot write " + quote_for_error(path.string()) + " for gnuplot");
}

// stderr text on one line: lines joined with " | ", blank lines left out, at most ~2000
// characters, control characters escaped.
std::string one_line(const std::string& text) {
  std::istringstream in(text);
  std::string line, joined;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r^") == std::string::npos) continue;
    if (!joined.empty()) joined += " | ";
    joined += line;
  }
  return error_text(joined, 2000);
}

// Runs `gnuplot -d script.gp` in `dir` with stdin and stdout on /dev/null and stderr in
// `err`; its wait status. Arguments go to exec as they are: no shell sees them.
int spawn_gnuplot(const std::string& gnuplot, const fs::path& dir, const fs::path& err) {
  posix_spawn_file_actions_t actions;
  if (posix_spawn_file_actions_init(&actions) != 0)
    throw std::runtime_error("cannot start gnuplot: out of memory");
  struct Guard {
    posix_spawn_file_actions_t* a;
    ~Guard() { posix_spawn_file_actions_destroy(a); }
  } guard{&actions};
  int rc = posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  if (rc == 0)
    rc = posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                          0600);
  if (rc != 0) throw std::runtime_error(std::string("cannot start gnuplot: ") + std::strerror(rc));
  // -d: no initialisation files (~/.gnuplot), so that the script alone decides what runs.
  std::string arg0 = "gnuplot", arg1 = "-d", arg2 = "script.gp";
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  pid_t pid = 0;
  rc = posix_spawn(&pid, gnuplot.c_str(), &actions, nullptr, argv, environ);
  if (rc != 0)
    throw std::runtime_error("cannot start gnuplot " + quote_for_error(gnuplot) + ": " +
                             std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      throw std::runtime_error(std::string("waiting for gnuplot: ") + std::strerror(errno));
  }
  return status;
}

}  // namespace

std::string gnuplot_png_terminal(int width, int height) {
  return "set terminal pngcairo noenhanced size " + std::to_string(width) + "," +
         std::to_string(height) + " font 'sans,10'\n";
}

std::string gnuplot_quote(const std::string& text) {
  std::string q = "'";
  for (size_t at = 0; at < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[at]);
    const size_t n = detail::utf8_sequence_length(text, at);
    if (n == 0 || c < 0x20 || c == 0x7f) {
      q += '?';
      ++at;
      continue;
    }
    if (c == '\'') {
      q += "''";
    } else {
      q.append(text, at, n);
    }
    at += n;
  }
  return q + "'";
}

std::string gnuplot_output_name(size_t index) {
  return "output" + std::to_string(index) + ".png";
}

void run_gnuplot(const std::string& script, const std::map<std::string, std::string>& data_files,
                 const std::vector<std::string>& outputs) {
  const std::string gnuplot = find_gnuplot();
  if (gnuplot.empty())
    throw std::runtime_error(
        "gnuplot not found on PATH: pictures need the Debian package gnuplot-nox "
        "(apt-get install gnuplot-nox)");
  TempDir dir;
  for (const auto& [name, text] : data_files) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw std::runtime_error("gnuplot data file name " + quote_for_error(name) +
                               " is not a bare file name");
    write_file(dir.path() / name, text);
  }
  write_file(dir.path() / "script.gp", script);
  const fs::path err = dir.path() / "stderr.txt";
  const int status = spawn_gnuplot(gnuplot, dir.path(), err);
  std::ifstream err_in(err);
  std::ostringstream err_text;
  err_text << err_in.rdbuf();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    throw std::runtime_error("gnuplot failed (exit " + std::to_string(code) +
                             "): " + one_line(err_text.str()));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const fs::path made = dir.path() / gnuplot_output_name(i);
    std::error_code ec;
    if (!fs::exists(made) || fs::file_size(made, ec) == 0 || ec)
      throw std::runtime_error("gnuplot wrote no picture " + quote_for_error(outputs[i]) + ": " +
                               one_line(err_text.str()));
    fs::copy_file(made, outputs[i], fs::copy_options::overwrite_existing, ec);
    if (ec)
      throw std::runtime_error("cannot write picture " + quote_for_error(outputs[i]) + ": " +
                               ec.message());
  }
}

}  // namespace vmoe
