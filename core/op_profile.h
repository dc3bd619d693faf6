// Where a step's time goes: while an OpProfile is alive, every backend kernel call is timed
// and charged to the current phase (forward, backward, optimizer) and region (a model part
// such as "moe.router", named by ProfileRegion scopes in the model code), and every region's
// wall time is kept, exclusive of the regions nested in it. Backward charges a node to the
// region that was current when its forward op ran, so "moe.dispatch" covers both directions.
// Off unless an OpProfile is alive; then a region scope costs one thread-local read.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

enum class ProfilePhase : uint8_t { forward, backward, optimizer };
const char* profile_phase_name(ProfilePhase phase);

// The innermost region of this thread ("other" outside every scope). Names are string literals.
const char* current_profile_region();

// Makes `name` the current region for its lifetime.
class ProfileRegion {
 public:
  explicit ProfileRegion(const char* name);
  ~ProfileRegion();
  ProfileRegion(const ProfileRegion&) = delete;
  ProfileRegion& operator=(const ProfileRegion&) = delete;

 private:
  const char* previous_;
  bool timed_;
};

// Makes `phase` the current phase for its lifetime.
class ProfilePhaseScope {
 public:
  explicit ProfilePhaseScope(ProfilePhase phase);
  ~ProfilePhaseScope();
  ProfilePhaseScope(const ProfilePhaseScope&) = delete;
  ProfilePhaseScope& operator=(const ProfilePhaseScope&) = delete;

 private:
  ProfilePhase previous_;
};

// Whether an OpProfile is alive (backend_for then hands out the timing tables).
bool op_profile_active();
// Charges one kernel call of `seconds` to the current phase and region (profiled_backend.cpp).
void profile_kernel(const char* kernel, double seconds);

// One kernel kind in one phase and region, or (kernel empty) a region's exclusive wall time.
struct ProfileRow {
  ProfilePhase phase = ProfilePhase::forward;
  std::string region;
  std::string kernel;  // empty: the region's wall time
  int64_t calls = 0;
  double seconds = 0;
};

// Collects from construction to rows(). One at a time per process.
class OpProfile {
 public:
  OpProfile();
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;
  // Sorted by phase, region, kernel.
  std::vector<ProfileRow> rows() const;
};

}  // namespace vmoe
