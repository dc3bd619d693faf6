#!/usr/bin/env bash
# Whether two vmoe builds train the router study's arms to the same bits: each arm
# (launch/studies/router_arms.sh) trained STEPS steps with each binary, on the study's data,
# seed and threads, and the final weights compared value for value (h5diff, no tolerance).
# A study whose runs span several commits is "of the submitted tree" where this passes between
# the runs' binary and the submitted one (on the same machine: OpenBLAS's kernels differ
# between CPUs).
# Usage: launch/studies/same_numerics.sh VMOE_A VMOE_B [OUT_DIR]   (env: ARMS, STEPS, THREADS)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 2 ]] || { echo "usage: $0 VMOE_A VMOE_B [OUT_DIR]" >&2 && exit 2; }
binaries=("$1" "$2")
out=${3:-$(mktemp -d)}
arms=${ARMS:-"dense every2 last1 e4 e16 k1 bpr_c05 vanilla_c05 dropless experts_choice soft dense_reg every2_reg"}
steps=${STEPS:-30}
threads=${THREADS:-1}
# shellcheck disable=SC2034  # reg_sets and vmoe are read by router_arms.sh
read -r -a reg_sets <<<"${REG_SETS:---set model.dropout_rate=0.1}"
for b in "${binaries[@]}"; do
  [[ -x $b ]] || { echo "same_numerics: error: $b is not an executable vmoe" >&2 && exit 2; }
done
# shellcheck disable=SC2034  # router_arms.sh writes the arms' plans with it
vmoe=${binaries[0]}
source "$root/launch/studies/router_arms.sh"

differ=0
for arm in $arms; do
  arm_config "$arm"
  for i in 0 1; do
    dir=$out/$arm.$i
    rm -rf "$dir"
    "${binaries[$i]}" train --config "$cfg" --workdir "$dir" --set train.seed=1 \
      --set train.num_steps="$steps" --set schedule.warmup_steps=$((steps / 10 + 1)) \
      --set train.eval_every_steps="$steps" --set train.threads="$threads" "${sets[@]}" \
      >"$dir.log" 2>&1 || { echo "same_numerics: error: $arm failed (see $dir.log)" >&2 && exit 1; }
  done
  if h5diff -q "$out/$arm.0/weights.h5" "$out/$arm.1/weights.h5"; then
    echo "$arm: same weights after $steps steps"
  else
    echo "$arm: DIFFERENT weights after $steps steps"
    differ=1
  fi
done
exit $differ
