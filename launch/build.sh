#!/usr/bin/env bash
# Configures and builds vmoe (Release) into build/ (or $VMOE_BUILD_DIR).
# Extra arguments go to CMake's configure step, e.g. -DVMOE_CUDA=ON.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${VMOE_BUILD_DIR:-$root/build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
werror=OFF
[[ "${CI:-}" == "true" ]] && werror=ON
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DVMOE_WERROR=$werror "$@" >/dev/null
elif [[ $# -gt 0 || "$werror" == ON ]]; then
  cmake -S "$root" -B "$build_dir" -DVMOE_WERROR=$werror "$@" >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)"
