// Op-profile tables (launch/profile_report.h).
#include "launch/profile_report.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>

namespace vmoe {

namespace {

constexpr int kPhases = 3;
using PerPhase = std::array<double, kPhases>;

double sum(const PerPhase& v) {
  return v[0] + v[1] + v[2];
}

struct RegionTotals {
  PerPhase wall{}, kernels{};
};
struct KernelTotals {
  std::array<int64_t, kPhases> calls{};
  PerPhase seconds{};
};

std::map<std::string, RegionTotals> by_region(const std::vector<ProfileRow>& rows) {
  std::map<std::string, RegionTotals> out;
  for (const ProfileRow& r : rows) {
    RegionTotals& t = out[r.region];
    (r.kernel.empty() ? t.wall : t.kernels)[int(r.phase)] += r.seconds;
  }
  return out;
}

std::map<std::string, KernelTotals> by_kernel(const std::vector<ProfileRow>& rows) {
  std::map<std::string, KernelTotals> out;
  for (const ProfileRow& r : rows) {
    if (r.kernel.empty()) continue;
    KernelTotals& t = out[r.kernel];
    t.calls[int(r.phase)] += r.calls;
    t.seconds[int(r.phase)] += r.seconds;
  }
  return out;
}

// Names sorted by decreasing total.
template <typename Map, typename Total>
std::vector<std::string> by_decreasing(const Map& map, Total total) {
  std::vector<std::string> names;
  for (const auto& [name, value] : map)
    names.push_back(name);
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return total(map.at(a)) > total(map.at(b));
  });
  return names;
}

bool is_routing_part(const std::string& region) {
  return region == "moe.router" || region == "moe.top_k" || region == "moe.slots" ||
         region == "moe.dispatch" || region == "moe.combine" || region == "moe.aux_losses";
}

std::string format(const char* fmt, auto... args) {
  char line[256];
  std::snprintf(line, sizeof line, fmt, args...);
  return line;
}

}  // namespace

MoeProfile moe_profile(const std::vector<ProfileRow>& rows, int64_t steps) {
  MoeProfile m;
  const double per_step_ms = 1e3 / double(std::max<int64_t>(steps, 1));
  for (const auto& [region, t] : by_region(rows)) {
    if (region.rfind("moe.", 0) != 0) continue;
    const double ms = sum(t.wall) * per_step_ms;
    m.total_ms += ms;
    if (region == "moe.experts") m.experts_ms += ms;
    if (region == "moe.exchange") m.exchange_ms += ms;
    if (region == "moe.report") m.report_ms += ms;
    if (is_routing_part(region)) m.routing_ms += ms;
  }
  return m;
}

std::string profile_text(const std::vector<ProfileRow>& rows, int64_t steps) {
  const double per_step_ms = 1e3 / double(std::max<int64_t>(steps, 1));
  const auto regions = by_region(rows);
  const auto kernels = by_kernel(rows);
  double total = 0;
  for (const auto& [name, t] : regions)
    total += sum(t.wall);
  std::string out = format(
      "profile over %lld steps, ms per step (each kernel timed alone; host = wall - kernels):\n",
      static_cast<long long>(steps));
  out += format("%-18s %10s %10s %10s %10s %10s %7s\n", "region", "forward", "backward",
                "optimizer", "kernels", "host", "share");
  for (const std::string& name :
       by_decreasing(regions, [](const RegionTotals& t) { return sum(t.wall); })) {
    const RegionTotals& t = regions.at(name);
    out += format("%-18s %10.2f %10.2f %10.2f %10.2f %10.2f %6.1f%%\n", name.c_str(),
                  t.wall[0] * per_step_ms, t.wall[1] * per_step_ms, t.wall[2] * per_step_ms,
                  sum(t.kernels) * per_step_ms, (sum(t.wall) - sum(t.kernels)) * per_step_ms,
                  total > 0 ? 100 * sum(t.wall) / total : 0.0);
  }
  out += format("%-18s %54.2f\n", "total", total * per_step_ms);
  out += format("\n%-20s %8s %10s %10s %10s %7s\n", "kernel", "calls", "forward", "backward",
                "optimizer", "share");
  for (const std::string& name :
       by_decreasing(kernels, [](const KernelTotals& t) { return sum(t.seconds); })) {
    const KernelTotals& t = kernels.at(name);
    const int64_t calls = t.calls[0] + t.calls[1] + t.calls[2];
    out += format("%-20s %8.0f %10.2f %10.2f %10.2f %6.1f%%\n", name.c_str(),
                  double(calls) / double(std::max<int64_t>(steps, 1)), t.seconds[0] * per_step_ms,
                  t.seconds[1] * per_step_ms, t.seconds[2] * per_step_ms,
                  total > 0 ? 100 * sum(t.seconds) / total : 0.0);
  }
  const MoeProfile m = moe_profile(rows, steps);
  if (m.total_ms > 0) {
    out += format(
        "\nMoE layers: %.2f ms per step = experts %.1f%%, routing (router, top-k, slots, "
        "dispatch, combine, aux losses) %.1f%%, exchange %.1f%%, report %.1f%%\n",
        m.total_ms, 100 * m.experts_ms / m.total_ms, 100 * m.routing_ms / m.total_ms,
        100 * m.exchange_ms / m.total_ms, 100 * m.report_ms / m.total_ms);
  }
  return out;
}

nlohmann::json profile_json(const std::vector<ProfileRow>& rows, int64_t steps) {
  const double per_step_ms = 1e3 / double(std::max<int64_t>(steps, 1));
  nlohmann::json j;
  j["steps"] = steps;
  j["regions"] = nlohmann::json::array();
  j["kernels"] = nlohmann::json::array();
  for (const ProfileRow& r : rows) {
    const char* phase = profile_phase_name(r.phase);
    if (r.kernel.empty()) {
      j["regions"].push_back(
          {{"region", r.region}, {"phase", phase}, {"wall_ms", r.seconds * per_step_ms}});
    } else {
      j["kernels"].push_back({{"region", r.region},
                              {"kernel", r.kernel},
                              {"phase", phase},
                              {"calls", double(r.calls) / double(std::max<int64_t>(steps, 1))},
                              {"ms", r.seconds * per_step_ms}});
    }
  }
  const MoeProfile m = moe_profile(rows, steps);
  j["moe"] = {{"total_ms", m.total_ms},
              {"experts_ms", m.experts_ms},
              {"routing_ms", m.routing_ms},
              {"exchange_ms", m.exchange_ms},
              {"report_ms", m.report_ms}};
  return j;
}

}  // namespace vmoe
