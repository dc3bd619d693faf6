#!/usr/bin/env bash
# The training step of every arm of launch/studies/router_study.sh timed on its own
# (`vmoe bench train`: random data, no evaluation), so that the study's accuracy-against-time
# plot does not depend on what else the machine ran beside each training run. ROUNDS rounds
# over the arms in turn (so that the machine's drift hits every arm alike), each the median of
# STEPS steps after WARMUP; OUT_DIR/configs/ARM.bench.json keeps every round's median and
# their median. Run it on an otherwise idle machine.
# Usage: launch/studies/router_bench.sh [OUT_DIR]   (env: VMOE, ARMS, THREADS, ROUNDS, STEPS,
#        WARMUP)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vmoe=${VMOE:-$root/build/vmoe}
out=${1:-$root/workdir/router_study}
arms=${ARMS:-"dense every2 last1 e4 e16 k1 bpr_c05 vanilla_c05 dropless experts_choice soft"}
threads=${THREADS:-1}
read -r -a reg_sets <<<"${REG_SETS:---set model.dropout_rate=0.1}"

source "$root/launch/studies/router_arms.sh"

declare -A rounds
for ((r = 0; r < ${ROUNDS:-3}; ++r)); do
  for arm in $arms; do
    arm_config "$arm"
    ms=$("$vmoe" bench train --config "$cfg" "${sets[@]}" --set train.threads="$threads" \
      --steps "${STEPS:-20}" --warmup "${WARMUP:-3}" --gemm-size 256 --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["step_ms"]["median"])')
    rounds[$arm]="${rounds[$arm]:-} $ms"
  done
done
for arm in $arms; do
  python3 - "$arm" ${rounds[$arm]} >"$out/configs/$arm.bench.json" <<'PY'
import json, statistics, sys
values = [float(v) for v in sys.argv[2:]]
print(json.dumps({"arm": sys.argv[1], "rounds_ms": values,
                  "step_ms": {"median": statistics.median(values)}}))
PY
  printf '%-16s median %s ms per step (rounds:%s)\n' "$arm" \
    "$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["step_ms"]["median"], 1))' \
      <"$out/configs/$arm.bench.json")" "${rounds[$arm]}"
done
