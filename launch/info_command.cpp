// `vmoe info`: what this build was configured with (compiler, CUDA and its architectures, cuDNN,
// NCCL, MPI, HDF5) and the devices this machine offers (CPU threads and the BLAS kernels they
// run; CUDA devices, or why there are none). Exit code 0 whether or not a GPU is present.
#include <omp.h>

#include <cstdio>
#include <string>
#include <thread>

#include "core/cpu/blas_kernels.h"
#include "hdf5/hdf5_handle.h"
#include "launch/commands.h"
#include "parallel/mpi_runtime.h"
#include "vmoe_build_features.h"
#if VMOE_WITH_CUDA
#include "core/cuda/cuda_devices.h"
#endif

namespace vmoe {

#if VMOE_WITH_CUDA
namespace {

std::string gib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", double(bytes) / double(int64_t(1) << 30));
  return text;
}

}  // namespace
#endif

int run_info() {
  std::printf("vmoe %s (%s, %s%s)\n", VMOE_VERSION, VMOE_BUILD_TYPE, VMOE_CXX_COMPILER,
              VMOE_SANITIZE ? ", ASan + UBSan" : "");
  std::printf("build:\n");
#if VMOE_WITH_CUDA
  std::printf("  cuda: on (nvcc %s, architectures %s), cuDNN %s, NCCL %s\n",
              VMOE_CUDA_COMPILER_VERSION, VMOE_CUDA_ARCHITECTURES, VMOE_CUDNN_VERSION,
              VMOE_NCCL_VERSION);
#else
  std::printf("  cuda: off (configured without nvcc or with -DVMOE_CUDA=OFF)\n");
#endif
  std::printf("  mpi: %s\n", mpi_library_text().c_str());
  std::printf("  hdf5: %s\n", hdf5_library_text().c_str());
  std::printf("devices:\n");
  std::printf("  cpu: %u hardware threads, %d OpenMP threads\n",
              std::thread::hardware_concurrency(), omp_get_max_threads());
  std::printf("  blas: %s kernels of OpenBLAS (this CPU's best: %s)\n",
              cpu::openblas_core().c_str(), cpu::openblas_core_for_cpu().c_str());
#if VMOE_WITH_CUDA
  const CudaDevices cuda = query_cuda_devices();
  std::printf("  cuda runtime %s, driver %s\n", cuda_version_text(cuda.runtime_version).c_str(),
              cuda.driver_version > 0 ? cuda_version_text(cuda.driver_version).c_str() : "none");
  if (cuda.devices.empty()) std::printf("  cuda: no device (%s)\n", cuda.problem.c_str());
  for (const CudaDevice& d : cuda.devices) {
    std::printf("  cuda:%d: %s, compute capability %d.%d, %d multiprocessors, %s\n", d.index,
                d.name.c_str(), d.major, d.minor, d.multiprocessors, gib(d.memory_bytes).c_str());
  }
#endif
  return 0;
}

}  // namespace vmoe
