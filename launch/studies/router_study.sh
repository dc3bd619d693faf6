#!/usr/bin/env bash
# Routers and placements on Fashion-MNIST (docs/experiments.md): per training length (EPOCHS,
# each a full schedule of its own: warmup 10%, cosine decay), per seed, the arms
#   dense       fashion_vit_ti
#   every2      fashion_vmoe_ti: E 8, k 2, Every-2 (blocks 1, 3), capacity 1.05, vanilla
#   last1       MoE in the last block only (with 4 blocks, Last-2 = blocks 1, 3 = Every-2)
#   e4, e16     E 4 and E 16
#   k1          k 1
#   bpr_c05     capacity 0.5 with Batch Prioritized Routing; vanilla_c05 the same without
#   dropless    dropless top-2 (no capacity)
#   experts_choice  each expert takes C = S * 2 / E tokens (the compute of top-2)
#   soft        Soft MoE, 13 slots per expert (104 slots per 50-token image ~ top-2's 2 x 50)
#   dense_reg, every2_reg  the regularised setting (REG_SETS overrides; default dropout 0.1)
# then launch/studies/router_summary.py writes the tables (accuracy, FLOPs per image from
# `vmoe plan`, train time) and the plots (accuracy against FLOPs per image and wall time; the
# wall time of launch/studies/router_bench.sh's step timings when they exist).
# Usage: launch/studies/router_study.sh [OUT_DIR [--set field=value ...]]   (env: VMOE, SEEDS,
#        EPOCHS, ARMS, THREADS, REG_SETS; finished runs are skipped, so it can be resumed)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vmoe=${VMOE:-$root/build/vmoe}
out=${1:-$root/workdir/router_study}
shift || true
extra=("$@")
seeds=${SEEDS:-"0 1 2"}
epochs=${EPOCHS:-"1 3 10"}
arms=${ARMS:-"dense every2 last1 e4 e16 k1 bpr_c05 vanilla_c05 dropless experts_choice soft"}
threads=${THREADS:-2}
read -r -a reg_sets <<<"${REG_SETS:---set model.dropout_rate=0.1}"
steps_per_epoch=${STEPS_PER_EPOCH:-469}  # 60000 images at batch 128, the last one partial

source "$root/launch/studies/common.sh"
source "$root/launch/studies/router_arms.sh"

for ep in $epochs; do
  steps=$((ep * steps_per_epoch))
  eval_every=$((steps / 5))
  mkdir -p "$out/e$ep"
  for seed in $seeds; do
    for arm in $arms; do
      arm_config "$arm"
      echo "epochs $ep, seed $seed, $arm"
      study_train "$out/e$ep/${arm}_s$seed" "$cfg" "$steps" $((steps / 10)) "$seed" "${sets[@]}"
    done
  done
done

python3 "$root/launch/studies/router_summary.py" --out "$out/router_study" --study "$out" \
  --epochs $epochs --arms $arms --seeds $seeds --steps-per-epoch "$steps_per_epoch"
