#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest, on the CPU
# and then on the strict test device. The last line is ctest's summary. Extra arguments go to ctest (e.g. -R gradcheck).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/launch/install-deps.sh"
"$root/launch/build.sh"
build_dir=${VMOE_BUILD_DIR:-$root/build}
# Ranks and tests share the cores: one BLAS/OpenMP thread per test process.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
ctest --test-dir "$build_dir" -j "$(nproc)" --output-on-failure --timeout 600 "$@"
# The whole suite again with the strict test device as the default device (core/device.h):
# any code that reads device memory behind the backend's back fails here. The multihost, slurm
# and memory tests run the vmoe binary on its configured device, which VMOE_TEST_DEVICE does not
# change: they ran once above.
echo "test.sh: the suite again on the strict device (VMOE_TEST_DEVICE=cpu_strict)"
VMOE_TEST_DEVICE=cpu_strict ctest --test-dir "$build_dir" -j "$(nproc)" --output-on-failure \
  --timeout 600 -LE 'multihost|slurm|memory' "$@"
