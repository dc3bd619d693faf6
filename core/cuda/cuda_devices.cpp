// query_cuda_devices through the CUDA runtime.
#include "core/cuda/cuda_devices.h"

#include <cuda_runtime_api.h>

#include "core/cuda/cuda_check.h"

namespace vmoe {

std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

CudaDevices query_cuda_devices() {
  CudaDevices out;
  cudaRuntimeGetVersion(&out.runtime_version);
  if (cudaDriverGetVersion(&out.driver_version) != cudaSuccess) out.driver_version = 0;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    out.problem = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    VMOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    out.devices.push_back(CudaDevice{i, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                                     int64_t(prop.totalGlobalMem)});
  }
  if (count == 0) out.problem = "the runtime reports no device";
  return out;
}

}  // namespace vmoe
