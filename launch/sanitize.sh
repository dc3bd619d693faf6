#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc, -O1 with line
# tables, VMOE_SANITIZE=ON, build dir build-asan): configures, builds everything and runs ctest
# once on VMOE_TEST_DEVICE (default cpu). Exits non-zero on any test failure or sanitizer report
# (UBSan does not recover: a report aborts the test; ASan always aborts).
#   launch/sanitize.sh                               # configure + build + ctest on the cpu
#   VMOE_TEST_DEVICE=cpu_strict launch/sanitize.sh   # the strict-device pass (CI, launch/test.sh)
#   launch/sanitize.sh -R data                       # extra arguments go to ctest
# ASan options (docs/hardening.md): leak detection is off (detect_leaks=0) because Open MPI,
# loaded by every test through parallel HDF5, keeps allocations it never frees until exit;
# every other ASan and UBSan check stays on.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ASAN_BUILD_DIR:-$root/build-asan}
jobs=${ASAN_BUILD_JOBS:-$(nproc)}

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
start=$(date +%s)
# -O1 -g1: the cheapest build that still gives symbolized stacks with line numbers; the
# benchmarks are left out (no test runs them; the release build compiles them), and so is the
# CUDA code (device code is not instrumented; the release build compiles it).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DVMOE_SANITIZE=ON -DVMOE_WERROR=ON -DVMOE_BUILD_BENCH=OFF -DVMOE_CUDA=OFF "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$jobs"
built=$(date +%s)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export VMOE_TEST_DEVICE=${VMOE_TEST_DEVICE:-cpu}
# Ranks and tests share the cores: one BLAS/OpenMP thread per test process.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
status=0
(cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 1200 "$@") || status=$?
end=$(date +%s)
echo "sanitize.sh: build $((built - start)) s, tests $((end - built)) s on $VMOE_TEST_DEVICE," \
  "status $status"
exit $status
