// metrics.jsonl: one JSON object per line with "step" and namespaced keys ("train/loss",
// "eval/accuracy", ...). Lines are flushed as written so a crash loses nothing logged.
#pragma once
#include <cstdio>
#include <map>
#include <string>

namespace vmoe {

class MetricsLog {
 public:
  // Opens `path` for appending (a resumed run continues the same file).
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void write(int64_t step, const std::map<std::string, double>& values);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace vmoe
