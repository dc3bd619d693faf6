// metrics.jsonl writer (nlohmann-json).
#include "launch/metrics_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace vmoe {

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (!file_) {
    throw std::runtime_error("cannot open metrics file '" + path + "': " + std::strerror(errno));
  }
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(int64_t step, const std::map<std::string, double>& values) {
  nlohmann::json line;
  line["step"] = step;
  for (const auto& [key, value] : values) {
    // JSON has no NaN/inf: write null so that readers see the value was bad.
    if (std::isfinite(value))
      line[key] = value;
    else
      line[key] = nullptr;
  }
  const std::string text = line.dump() + "\n";
  if (std::fputs(text.c_str(), file_) < 0 || std::fflush(file_) != 0) {
    throw std::runtime_error("cannot write metrics file '" + path_ + "': " + std::strerror(errno));
  }
}

}  // namespace vmoe
