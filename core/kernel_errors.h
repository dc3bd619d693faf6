// Errors that kernels find in their data (an index or label out of range). On a device the
// host can read, the kernel throws at once. On any other device the kernel cannot stop the
// host: it records the first error in the device's error flag, treats the offending element
// as absent (a zero row, a skipped row), and the host learns of it at its next
// check_kernel_errors(device) - the training loop checks on every logging step and before
// every checkpoint, evaluation after every batch - which reads the flag back (one counted
// host read) and throws the recorded message.
//
// Kernels must find errors in a serial pass before any OpenMP region: a throw must not leave
// a parallel region.
#pragma once
#include <string>

#include "core/device.h"

namespace vmoe {

// Reports `message` ("index_select: index 9 at position 3 is outside [-1, 5)") for `device`:
// throws std::invalid_argument when the host can read the device, else records it.
void kernel_error(Device device, const std::string& message);

// Throws std::invalid_argument with the first error recorded on `device` since the last check,
// and clears it. Free on host-readable devices (nothing is ever recorded there).
void check_kernel_errors(Device device);

}  // namespace vmoe
