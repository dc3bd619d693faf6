// Progress bar / periodic lines.
#include "launch/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace vmoe {

namespace {

std::string format_duration(double seconds) {
  const int64_t s = int64_t(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

// "loss 0.1234  ", or nothing for a NaN loss (progress of work that has no loss).
std::string loss_text(double loss) {
  if (std::isnan(loss)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "loss %.4f  ", loss);
  return buf;
}

}  // namespace

Progress::Progress(int64_t total_steps, Style style, int64_t line_every)
    : total_(total_steps), style_(style), line_every_(line_every > 0 ? line_every : 50) {
  if (style_ == Style::automatic) style_ = isatty(STDERR_FILENO) ? Style::bar : Style::lines;
}

void Progress::update(int64_t step, double loss, double images_per_s) {
  const int64_t done = step + 1;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = done > 0 ? elapsed / double(done) * double(total_ - done) : 0;
  if (style_ == Style::bar) {
    // Redraw at most 10 times a second.
    if (done != total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30;
    const int filled = total_ > 0 ? int(double(width) * double(done) / double(total_)) : width;
    std::string bar(size_t(filled), '#');
    bar.resize(size_t(width), '.');
    std::fprintf(stderr, "\r[%s] %lld/%lld %s%.0f img/s  ETA %s  ", bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_),
                 loss_text(loss).c_str(), images_per_s, format_duration(eta).c_str());
    std::fflush(stderr);
    bar_visible_ = true;
  } else if (style_ == Style::lines && (done % line_every_ == 0 || done == total_)) {
    std::fprintf(stderr, "step %lld/%lld  %s%.0f img/s  elapsed %s  ETA %s\n",
                 static_cast<long long>(done), static_cast<long long>(total_),
                 loss_text(loss).c_str(), images_per_s, format_duration(elapsed).c_str(),
                 format_duration(eta).c_str());
  }
}

void Progress::message(const std::string& text) {
  if (style_ == Style::none) return;
  if (bar_visible_) std::fprintf(stderr, "\r\033[K");
  bar_visible_ = false;
  std::fprintf(stderr, "%s\n", text.c_str());
}

void Progress::finish() {
  if (bar_visible_) std::fprintf(stderr, "\n");
  bar_visible_ = false;
}

}  // namespace vmoe
