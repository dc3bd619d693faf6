// Training progress on the terminal: a one-line bar (step, loss, images/s, ETA) redrawn in
// place on a TTY, plain periodic lines otherwise (logs, Slurm output files).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace vmoe {

class Progress {
 public:
  enum class Style : uint8_t { automatic, bar, lines, none };
  Progress(int64_t total_steps, Style style, int64_t line_every);
  // Called after each step with that step's figures; a NaN loss is not shown (work without a
  // loss, e.g. `vmoe data pack`).
  void update(int64_t step, double loss, double images_per_s);
  // Prints a message on its own line (clears the bar first).
  void message(const std::string& text);
  void finish();
  // Leaves the terminal on a fresh line (also when a step throws).
  ~Progress() { finish(); }

 private:
  int64_t total_;
  Style style_;
  int64_t line_every_;
  bool bar_visible_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace vmoe
