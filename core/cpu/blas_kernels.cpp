#include "core/cpu/blas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string_view>

namespace vmoe::cpu {

namespace {

// The OpenBLAS kernel families that use AVX2 or wider.
constexpr std::array<std::string_view, 5> kAvx2Cores = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                                        "SapphireRapids"};

}  // namespace

std::string openblas_core() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

bool is_avx2_core(const std::string& name) {
  return std::find(kAvx2Cores.begin(), kAvx2Cores.end(), name) != kAvx2Cores.end();
}

std::string openblas_core_for_cpu() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
  if (avx512) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return __builtin_cpu_is("amd") ? "Zen" : "Haswell";
#endif
  return "";
}

void reexec_if_openblas_misdetected(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice, or our own re-exec's
  if (is_avx2_core(openblas_core())) return;
  const std::string best = openblas_core_for_cpu();
  if (best.empty()) return;  // the CPU has no AVX2: the generic kernels are what it runs
  setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: run on with the kernels loaded
}

}  // namespace vmoe::cpu
