#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest.
# The last line is ctest's summary. Extra arguments go to ctest (e.g. -R gradcheck).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/launch/install-deps.sh"
"$root/launch/build.sh"
build_dir=${VMOE_BUILD_DIR:-$root/build}
# Ranks and tests share the cores: one BLAS/OpenMP thread per test process.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
ctest --test-dir "$build_dir" -j "$(nproc)" --output-on-failure --timeout 600 "$@"
