# Shared by the study scripts (sourced): `study_train DIR CONFIG STEPS WARMUP SEED [ARGS...]`
# runs one `vmoe train` into DIR (log DIR.log) unless DIR already holds its weights or its
# metrics end with the final evaluation (records restored by router_records.sh's copy), with the
# study's seed, length, warmup, evaluation cadence (eval_every), threads and extra overrides.
study_train() {
  local dir=$1 cfg=$2 steps=$3 warmup=$4 seed=$5
  shift 5
  if [[ -f $dir/weights.h5 ]]; then return; fi  # done in an earlier call
  if grep -qs '"train/seconds"' "$dir/metrics.jsonl"; then return; fi  # a kept record
  "$vmoe" train --config "$cfg" --workdir "$dir" --set train.seed="$seed" \
    --set train.num_steps="$steps" --set schedule.warmup_steps="$warmup" \
    --set train.eval_every_steps="$eval_every" --set train.threads="$threads" "${extra[@]}" "$@" \
    >"$dir.log" 2>&1 || { echo "failed: $dir (see $dir.log)" >&2; exit 1; }
  grep "^test accuracy" "$dir.log"
}
