// OpenBLAS chooses its kernels once, when the library loads, from the CPU model. A CPU newer than
// the installed OpenBLAS (Debian 12's 0.3.21 on a Sapphire or Emerald Rapids Xeon, say) is not
// recognised and gets the generic SSE3 kernels ("Prescott"): sgemm at a quarter to a fifth of the
// AVX-512 kernels' rate on the same core. OPENBLAS_CORETYPE overrides the choice, but is read only
// while the library loads, before main: hence a re-execution of the program with it set.
#pragma once
#include <string>

namespace vmoe::cpu {

// The kernel family OpenBLAS loaded ("Haswell", "SkylakeX", "Prescott", ...).
std::string openblas_core();

// Whether an OpenBLAS kernel family uses AVX2 or wider ("Haswell", "Zen", "SkylakeX", ...).
bool is_avx2_core(const std::string& name);

// The fastest OpenBLAS kernel family for this CPU's features (as the CPU and OS enable them):
// "Cooperlake" (AVX-512 with BF16), "SkylakeX" (AVX-512 F, BW, VL, DQ), "Zen" or "Haswell" (AVX2 +
// FMA, AMD or not); "" below AVX2 or off x86-64.
std::string openblas_core_for_cpu();

// When OpenBLAS loaded kernels without AVX2 on a CPU with AVX2 + FMA and OPENBLAS_CORETYPE is not
// set, executes this program again (/proc/self/exe, the same arguments and environment) with
// OPENBLAS_CORETYPE = openblas_core_for_cpu(); the user's own setting always wins. Returns when
// nothing needs doing or the exec failed (the program then runs on as loaded). Call first in
// main, before threads or MPI start.
void reexec_if_openblas_misdetected(char** argv);

}  // namespace vmoe::cpu
