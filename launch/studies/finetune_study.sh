#!/usr/bin/env bash
# Fine-tuning at a new resolution on Fashion-MNIST (docs/experiments.md): per seed,
#   pretrain   fashion_vit_ti_pretrain5 (classes 0-4, 28 px) for PRETRAIN_STEPS steps
#   fine-tune  fashion_vit_ti_finetune5 (classes 5-9, 40 px: head fresh, position embedding
#              zoomed 7x7 -> 10x10) from the pre-trained weights, its 500 steps
#   scratch    the same fine-tuning config and steps from a fresh initialisation
# Every run evaluates on the (filtered) test split every EVAL_EVERY steps; then
# launch/studies/summarize.py writes the table (mean and spread over seeds) and the plot.
# Usage: launch/studies/finetune_study.sh [OUT_DIR [--set field=value ...]]   (env: VMOE, SEEDS,
#        PRETRAIN_STEPS, FT_STEPS, EVAL_EVERY, THREADS, MODEL=vit|vmoe; the --set overrides go to every run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vmoe=${VMOE:-$root/build/vmoe}
out=${1:-$root/workdir/finetune_study}
shift || true
extra=("$@")
seeds=${SEEDS:-"0 1 2"}
pretrain_steps=${PRETRAIN_STEPS:-702}  # 3 epochs of the 30000 images of classes 0-4
eval_every=${EVAL_EVERY:-100}
threads=${THREADS:-2}
model=${MODEL:-vit}
pre_cfg=$root/configs/experiments/fashion_${model}_ti_pretrain5.textproto
ft_cfg=$root/configs/experiments/fashion_${model}_ti_finetune5.textproto
ft_steps=${FT_STEPS:-$(sed -n 's/^ *num_steps: *\([0-9]*\).*/\1/p' "$ft_cfg")}
ft_warmup=$(sed -n 's/^ *warmup_steps: *\([0-9]*\).*/\1/p' "$ft_cfg")
mkdir -p "$out"
source "$root/launch/studies/common.sh"

for seed in $seeds; do
  echo "seed $seed"
  study_train "$out/pretrain_s$seed" "$pre_cfg" "$pretrain_steps" 100 "$seed"
  study_train "$out/finetune_s$seed" "$ft_cfg" "$ft_steps" "$ft_warmup" "$seed" \
    --init-from "$out/pretrain_s$seed/weights.h5"
  study_train "$out/scratch_s$seed" "$ft_cfg" "$ft_steps" "$ft_warmup" "$seed"
done

python3 "$root/launch/studies/summarize.py" --out "$out/finetune" --title \
  "Fashion-MNIST classes 5-9 at 40 px: fine-tuned from classes 0-4 at 28 px vs from scratch" \
  --arm "fine-tuned from the 28 px, classes 0-4 model=$out/finetune_s{seed}" \
  --arm "from scratch (same config and steps)=$out/scratch_s{seed}" --seeds $seeds
