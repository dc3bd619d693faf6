#!/usr/bin/env bash
# Builds what test/gpu/check.sh runs on a GPU machine that has the CUDA driver and toolkit but not
# Debian's -dev packages (no OpenBLAS, MPI, HDF5, protobuf to build against): a shared-library
# build with CUDA for the given architecture, pruned to executables, libraries and ctest files,
# plus the non-system libraries they load (except the CUDA ones, which the GPU machine has), in
# gpu-bundle/ (git-ignored; carry it to the GPU machine). Usage: launch/gpu_bundle.sh [ARCH]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
arch=${1:-90}
build_dir=$root/build-gpu
bundle=$root/gpu-bundle
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build_dir" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON -DVMOE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"

rm -rf "$bundle"
mkdir -p "$bundle/lib"
# The build tree without objects: ctest's files name the executables by absolute path, so
# check.sh recreates this path on the GPU machine (a link to the carried copy).
(cd "$build_dir" && find . -type f \( -perm -u+x -o -name '*.so*' -o -name 'CTestTestfile.cmake' \
   -o -name '*_tests-*.cmake' -o -name '*.textproto' -o -name '*.h5' -o -name '*.json' \) \
   ! -path '*/CMakeFiles/*' -print0 | cpio -0 -pdm --quiet "$bundle/build")
# Libraries the executables load that a bare image lacks: everything but glibc and CUDA.
find "$bundle/build" -type f -perm -u+x -print0 | xargs -0 ldd 2>/dev/null |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libcuda|libcudart|libcublas[^/]*|libcudnn[^/]*|libnccl)\.so' |
  grep -v "^$build_dir" | while read -r lib; do cp -L "$lib" "$bundle/lib/"; done
cat >"$bundle/manifest" <<MANIFEST
source_dir=$root
build_dir=$build_dir
arch=$arch
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
MANIFEST
du -sh "$bundle"
