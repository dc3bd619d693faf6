#!/usr/bin/env bash
# One training step of fashion_vit_ti in vmoe and in PyTorch (same model, batch and thread
# count), side by side, with the ratio. Usage: bench/run_vit_step.sh [THREADS] [STEPS]
# Needs Debian's python3-torch (launch/install-deps.sh --with-torch).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
threads=${1:-$(nproc)}
steps=${2:-20}
build_dir=${VMOE_BUILD_DIR:-$root/build}
"$root/launch/build.sh" >/dev/null
args=(--image-size 28 --channels 1 --patch 4 --hidden 64 --mlp 128 --heads 4 --layers 4
      --classes 10 --batch 128 --threads "$threads" --steps "$steps" --warmup 3)
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
ours=$("$build_dir/bench/bench_vit_step" "${args[@]}")
theirs=$(/usr/bin/python3 "$root/bench/ref/vit_step_torch.py" "${args[@]}")
echo "$ours"
echo "$theirs"
/usr/bin/python3 - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"fashion_vit_ti train step, batch {a['batch']}, {a['threads']} threads: "
      f"vmoe {a['median_step_ms']:.1f} ms, torch {b['median_step_ms']:.1f} ms, "
      f"speed ratio vmoe/torch = {b['median_step_ms'] / a['median_step_ms']:.2f}x")
PY
