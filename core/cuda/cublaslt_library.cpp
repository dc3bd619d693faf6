#include "core/cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <atomic>
#include <stdexcept>

namespace vmoe::cuda {
namespace {

std::atomic<bool> loaded{false};

// dlopen's message for the soname alone, or the toolkit directory's file when that one opens.
void* open_library(const std::string& soname, std::string& why) {
  if (void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
  why = dlerror();
#ifdef VMOE_CUDA_LIBRARY_DIR
  const std::string in_toolkit = std::string(VMOE_CUDA_LIBRARY_DIR) + "/" + soname;
  if (void* handle = dlopen(in_toolkit.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
#endif
  return nullptr;
}

template <typename Function>
void resolve(void* handle, const char* name, Function& slot) {
  void* symbol = dlsym(handle, name);
  if (!symbol)
    throw std::runtime_error("cannot load " + cublaslt_soname() + ": it has no " + name +
                             " (a cuBLASLt older than the CUDA " +
                             std::to_string(CUBLAS_VER_MAJOR) + " headers vmoe was built with?)");
  slot = reinterpret_cast<Function>(symbol);
}

CublasLtLibrary load() {
  std::string why;
  void* handle = open_library(cublaslt_soname(), why);
  if (!handle)
    throw std::runtime_error("cannot load " + cublaslt_soname() + ": " + why +
                             "; the CUDA backend needs the CUDA toolkit's libraries on the "
                             "library path (LD_LIBRARY_PATH or ldconfig)");
  CublasLtLibrary lib{};
#define VMOE_RESOLVE(name) resolve(handle, #name, lib.name)
  VMOE_RESOLVE(cublasLtCreate);
  VMOE_RESOLVE(cublasLtGetStatusName);
  VMOE_RESOLVE(cublasLtGetStatusString);
  VMOE_RESOLVE(cublasLtMatmul);
  VMOE_RESOLVE(cublasLtMatmulAlgoGetHeuristic);
  VMOE_RESOLVE(cublasLtMatmulDescCreate);
  VMOE_RESOLVE(cublasLtMatmulDescSetAttribute);
  VMOE_RESOLVE(cublasLtMatmulPreferenceCreate);
  VMOE_RESOLVE(cublasLtMatmulPreferenceDestroy);
  VMOE_RESOLVE(cublasLtMatmulPreferenceSetAttribute);
  VMOE_RESOLVE(cublasLtMatrixLayoutCreate);
  VMOE_RESOLVE(cublasLtMatrixLayoutSetAttribute);
#undef VMOE_RESOLVE
  loaded = true;
  return lib;
}

}  // namespace

std::string cublaslt_soname() {
  return "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
}

const CublasLtLibrary& cublaslt() {
  // Never closed: the handle and the plans made with it live as long as the process.
  static const CublasLtLibrary lib = load();
  return lib;
}

bool cublaslt_loaded() {
  return loaded;
}

}  // namespace vmoe::cuda
