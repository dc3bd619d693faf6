#!/usr/bin/env bash
# Installs every Debian package vmoe needs to build, test and train. Idempotent: when all
# packages are already present it only checks and returns within a second.
# Usage: launch/install-deps.sh [--with-torch] [--with-fuzz]
#   --with-torch adds PyTorch for reference scripts; --with-fuzz clang and libFuzzer (fuzz.sh).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-openmp-dev liblapacke-dev
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libprotobuf-dev protobuf-compiler
  catch2 libcli11-dev nlohmann-json3-dev
  zlib1g-dev libjpeg62-turbo-dev libpng-dev
  gnuplot-nox fonts-dejavu-core python3
  dataset-fashion-mnist
  iproute2 slurm-wlm munge  # the multihost and slurm tests (docs/launching.md)
)
for option in "$@"; do
  case $option in
    --with-torch) packages+=(python3-torch python3-numpy python3-h5py) ;;
    --with-fuzz) packages+=(clang libclang-rt-14-dev) ;;  # libFuzzer + sanitizer runtimes
    *) echo "install-deps: unknown option $option" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
