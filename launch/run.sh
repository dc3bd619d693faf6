#!/usr/bin/env bash
# Installs what is missing, builds, and trains the default model — the V-MoE fashion_vmoe_ti,
# for a quick first run 3 epochs instead of the preset's 10 — on Fashion-MNIST, then prints
# the test accuracy and where the metrics and weights are.
# Usage: launch/run.sh [--config FILE] [--workdir DIR] [--set path.to.field=value ...]
# (with --config, the preset's own length is used unless a --set changes it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$root/configs/experiments/fashion_vmoe_ti.textproto
workdir=$root/workdir/fashion_vmoe_ti
quick=(--set train.num_epochs=3)
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; quick=(); shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
"$root/launch/install-deps.sh"
"$root/launch/build.sh"
build_dir=${VMOE_BUILD_DIR:-$root/build}
"$build_dir/vmoe" train --config "$config" --workdir "$workdir" "${quick[@]}" "${extra[@]}"
