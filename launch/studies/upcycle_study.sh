#!/usr/bin/env bash
# Sparse upcycling on Fashion-MNIST (docs/experiments.md): per seed, at the same total steps T,
#   dense      fashion_vit_ti for T steps (its checkpoint at T/2 is the upcycling source)
#   upcycled   that checkpoint upcycled into fashion_vmoe_ti (experts = the dense MLPs), T/2 steps
#   dense+     the same checkpoint continued as the dense model, T/2 steps, the same schedule
#   vmoe       fashion_vmoe_ti from scratch for T steps
# The two continuations restart the schedule (a short warmup, cosine decay over T/2 steps) and
# the optimizer state. Every run evaluates on the whole test split every EVAL_EVERY steps.
# Then launch/studies/summarize.py writes the table (mean and spread over seeds) and the plot.
# Usage: launch/studies/upcycle_study.sh [OUT_DIR [--set field=value ...]]   (env: VMOE, SEEDS,
#        TOTAL_STEPS, EVAL_EVERY, THREADS; the --set overrides go to every run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vmoe=${VMOE:-$root/build/vmoe}
out=${1:-$root/workdir/upcycle_study}
shift || true
extra=("$@")
seeds=${SEEDS:-"0 1 2"}
total=${TOTAL_STEPS:-936}  # 2 epochs of 60000 images at batch 128
half=$((total / 2))
eval_every=${EVAL_EVERY:-78}
threads=${THREADS:-2}
dense_cfg=$root/configs/experiments/fashion_vit_ti.textproto
vmoe_cfg=$root/configs/experiments/fashion_vmoe_ti.textproto
mkdir -p "$out"

source "$root/launch/studies/common.sh"

for seed in $seeds; do
  echo "seed $seed"
  study_train "$out/dense_s$seed" "$dense_cfg" "$total" 200 "$seed" \
    --set checkpoint.every_steps="$half" --set checkpoint.keep=0
  source_ckpt=$(printf "%s/dense_s%s/checkpoints/ckpt_%08d.h5" "$out" "$seed" "$half")
  if [[ ! -f $out/upcycled_s$seed.h5 ]]; then
    "$vmoe" upcycle --from "$source_ckpt" --config "$vmoe_cfg" --output "$out/upcycled_s$seed.h5" \
      --set train.seed="$seed" >/dev/null
  fi
  study_train "$out/upcycled_s$seed" "$vmoe_cfg" "$half" 50 "$seed" \
    --init-from "$out/upcycled_s$seed.h5"
  study_train "$out/dense_continued_s$seed" "$dense_cfg" "$half" 50 "$seed" --init-from "$source_ckpt"
  study_train "$out/vmoe_s$seed" "$vmoe_cfg" "$total" 200 "$seed"
done

python3 "$root/launch/studies/summarize.py" --out "$out/upcycle" --title \
  "Fashion-MNIST: upcycling at step $half of $total" \
  --arm "ViT-Ti (dense)=$out/dense_s{seed}" \
  --arm "ViT-Ti continued from step $half=$out/dense_continued_s{seed}@$half" \
  --arm "V-MoE-Ti upcycled at step $half=$out/upcycled_s{seed}@$half" \
  --arm "V-MoE-Ti from scratch=$out/vmoe_s{seed}" --seeds $seeds
