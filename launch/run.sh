#!/usr/bin/env bash
# Installs what is missing, builds, and trains the default model — the V-MoE fashion_vmoe_ti,
# for a quick first run 3 epochs instead of the preset's 10 — on Fashion-MNIST with 2 MPI
# ranks (experts split between them, the batch too), then prints the test accuracy and where
# the metrics and weights are.
# Usage: launch/run.sh [--ranks N] [--config FILE] [--workdir DIR] [--set path.to.field=value ...]
# (with --config, the preset's own length is used unless a --set changes it; --ranks 1 runs
# one plain process)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$root/configs/experiments/fashion_vmoe_ti.textproto
workdir=$root/workdir/fashion_vmoe_ti
quick=(--set train.num_epochs=3)
ranks=2
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ranks) ranks=$2; shift 2 ;;
    --config) config=$2; quick=(); shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
"$root/launch/install-deps.sh"
"$root/launch/build.sh"
build_dir=${VMOE_BUILD_DIR:-$root/build}
launcher=()
if [[ $ranks -gt 1 ]]; then
  launcher=(mpirun -n "$ranks" --bind-to none)
  [[ $(id -u) -eq 0 ]] && launcher+=(--allow-run-as-root)
  [[ $ranks -gt $(nproc) ]] && launcher+=(--oversubscribe)
fi
"${launcher[@]}" "$build_dir/vmoe" train --config "$config" --workdir "$workdir" "${quick[@]}" \
  "${extra[@]}"
