// Per-kernel and per-region time accounting (core/op_profile.h).
#include "core/op_profile.h"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>

namespace vmoe {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_active{false};
std::mutex g_mutex;
// (phase, region, kernel or nullptr for wall time) -> (calls, seconds). Keyed by the literals'
// addresses; rows() merges equal names.
std::map<std::tuple<int, const char*, const char*>, std::pair<int64_t, double>> g_totals;

thread_local const char* t_region = "other";
thread_local ProfilePhase t_phase = ProfilePhase::forward;
thread_local Clock::time_point t_segment_start;

void charge(ProfilePhase phase, const char* region, const char* kernel, double seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& slot = g_totals[{int(phase), region, kernel}];
  slot.first += 1;
  slot.second += seconds;
}

// Ends this thread's current wall-time segment (charged to the current phase and region) and
// starts the next one.
void close_segment() {
  const Clock::time_point now = Clock::now();
  charge(t_phase, t_region, nullptr, std::chrono::duration<double>(now - t_segment_start).count());
  t_segment_start = now;
}

}  // namespace

const char* profile_phase_name(ProfilePhase phase) {
  switch (phase) {
    case ProfilePhase::forward:
      return "forward";
    case ProfilePhase::backward:
      return "backward";
    case ProfilePhase::optimizer:
      return "optimizer";
  }
  return "?";
}

const char* current_profile_region() {
  return t_region;
}

ProfileRegion::ProfileRegion(const char* name)
    : previous_(t_region), timed_(g_active.load(std::memory_order_relaxed)) {
  if (timed_) close_segment();
  t_region = name;
}

ProfileRegion::~ProfileRegion() {
  if (timed_ && g_active.load(std::memory_order_relaxed)) close_segment();
  t_region = previous_;
}

ProfilePhaseScope::ProfilePhaseScope(ProfilePhase phase) : previous_(t_phase) {
  if (g_active.load(std::memory_order_relaxed)) close_segment();
  t_phase = phase;
}

ProfilePhaseScope::~ProfilePhaseScope() {
  if (g_active.load(std::memory_order_relaxed)) close_segment();
  t_phase = previous_;
}

bool op_profile_active() {
  return g_active.load(std::memory_order_relaxed);
}

void profile_kernel(const char* kernel, double seconds) {
  charge(t_phase, t_region, kernel, seconds);
}

OpProfile::OpProfile() {
  if (g_active.exchange(true))
    throw std::logic_error("OpProfile: one profile at a time per process");
  std::lock_guard<std::mutex> lock(g_mutex);
  g_totals.clear();
  t_segment_start = Clock::now();
}

OpProfile::~OpProfile() {
  g_active.store(false);
}

std::vector<ProfileRow> OpProfile::rows() const {
  std::map<std::tuple<int, std::string, std::string>, std::pair<int64_t, double>> merged;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& [key, value] : g_totals) {
      const auto& [phase, region, kernel] = key;
      auto& slot = merged[{phase, region, kernel ? kernel : ""}];
      slot.first += value.first;
      slot.second += value.second;
    }
  }
  std::vector<ProfileRow> out;
  out.reserve(merged.size());
  for (const auto& [key, value] : merged) {
    const auto& [phase, region, kernel] = key;
    out.push_back({ProfilePhase(phase), region, kernel, value.first, value.second});
  }
  return out;
}

}  // namespace vmoe
