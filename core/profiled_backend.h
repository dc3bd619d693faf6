// A backend table that times every kernel of another one for core/op_profile.h: backend_for
// hands it out while an OpProfile is alive. An asynchronous device is synchronised before and
// after each kernel, so that the time is the kernel's own (and the step runs slower).
#pragma once
#include "core/backend.h"

namespace vmoe {

// The timing table over `inner`, built once per device type (inner must outlive the process).
const Backend& profiled_backend(DeviceType type, const Backend& inner);

}  // namespace vmoe
