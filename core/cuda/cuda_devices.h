// What the CUDA runtime sees on this machine (`vmoe info`): the runtime and driver versions and
// every device, or why there is none (no driver, no device).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vmoe {

struct CudaDevice {
  int index = 0;
  std::string name;          // "NVIDIA H200"
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  int64_t memory_bytes = 0;  // global memory
};

struct CudaDevices {
  int runtime_version = 0;  // 13000 = 13.0 (the runtime vmoe is linked with)
  int driver_version = 0;   // the installed driver's CUDA version; 0 without a driver
  std::vector<CudaDevice> devices;
  std::string problem;  // why `devices` is empty ("" when the query worked)
};

// Queries the runtime; never throws for a machine without a driver or device (that is `problem`).
CudaDevices query_cuda_devices();

// "13.0" for 13000.
std::string cuda_version_text(int version);

}  // namespace vmoe
