// The OpenBLAS kernel choice (core/cpu/blas_kernels.h): this test process went through
// test_main's reexec_if_openblas_misdetected, so on a CPU with AVX2 + FMA it runs AVX2 or wider
// kernels, whatever OpenBLAS's own detection made of the CPU model.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "core/cpu/blas_kernels.h"

using vmoe::cpu::is_avx2_core;
using vmoe::cpu::openblas_core;
using vmoe::cpu::openblas_core_for_cpu;

TEST_CASE("blas kernels: the families' names and this CPU's best") {
  CHECK(is_avx2_core("Haswell"));
  CHECK(is_avx2_core("SkylakeX"));
  CHECK(is_avx2_core("Cooperlake"));
  CHECK_FALSE(is_avx2_core("Prescott"));
  CHECK_FALSE(is_avx2_core("Sandybridge"));
  CHECK_FALSE(is_avx2_core(""));
  const std::string best = openblas_core_for_cpu();
  INFO("this CPU's best: '" << best << "'");
  CHECK((best.empty() || is_avx2_core(best)));
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  CHECK(best.empty() != avx2);
#endif
}

TEST_CASE("blas kernels: after the re-exec the loaded kernels use AVX2 where the CPU has it") {
  const std::string best = openblas_core_for_cpu();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  INFO("loaded: " << openblas_core() << ", best: '" << best
                  << "', OPENBLAS_CORETYPE: " << (coretype ? coretype : "unset"));
  // A coretype other than the best one is the user's own choice, which stands (test_cli checks
  // that through `vmoe info`).
  if (!best.empty() && (coretype == nullptr || best == coretype))
    CHECK(is_avx2_core(openblas_core()));
}
