#!/usr/bin/env bash
# Keeps the router study's results with the code: copies every finished run's records
# (metrics.jsonl, config.textproto and any capacity_sweep.csv; not its weights or checkpoints)
# and the arms' plan and bench records from the study folder into
# docs/experiments/router_study/ (same layout), which router_summary.py reads as it reads the
# study folder. A later study resumes from them:
# `cp -r docs/experiments/router_study/. workdir/router_study/` and router_study.sh skips the
# runs whose metrics end with the final evaluation.
# Usage: launch/studies/router_records.sh [STUDY_DIR [DEST]]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
study=${1:-$root/workdir/router_study}
dest=${2:-$root/docs/experiments/router_study}
[[ -d $study ]] || { echo "router_records: error: no study folder $study" >&2 && exit 2; }
kept=0
for metrics in "$study"/e*/*/metrics.jsonl; do
  [[ -f $metrics ]] || continue
  grep -q '"train/seconds"' "$metrics" || continue  # still running: no final evaluation yet
  run=${metrics%/metrics.jsonl}
  to=$dest/$(basename "$(dirname "$run")")/$(basename "$run")
  mkdir -p "$to"
  cp "$metrics" "$run/config.textproto" "$to/"
  # A test-time capacity sweep (vmoe eval --capacity-sweep) of the run, where one was made.
  [[ -f $run/capacity_sweep.csv ]] && cp "$run/capacity_sweep.csv" "$to/"
  kept=$((kept + 1))
done
mkdir -p "$dest/configs"
for record in "$study"/configs/*.json; do
  [[ -f $record ]] && cp "$record" "$dest/configs/"
done
echo "router_records: $kept finished runs in $dest"
