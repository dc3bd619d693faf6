#!/usr/bin/env bash
# Training step of vmoe vs PyTorch (bench/ref/train_step_torch.py: the same model, batch and
# thread count), interleaved: each round runs every config in vmoe then in torch, so that the
# noise of a shared machine hits both alike. Prints each run, then per config the medians over
# the rounds, the median of the per-round ratios torch/vmoe (> 1: vmoe faster), the fastest
# single steps (the least disturbed by other load), and for each V-MoE config its throughput
# relative to the first dense config, in vmoe and in torch.
#
#   bench/compare_torch.sh [--rounds 5] [--steps 20] [--warmup 3] [--threads 2]
#                          [--create-venv] [CONFIG.textproto...]
#
# Default configs: configs/experiments/fashion_vit_ti and fashion_vmoe_ti. vmoe: the `vmoe`
# binary of ${VMOE_BUILD_DIR:-build} (built beforehand). PyTorch: $VMOE_TORCH_PYTHON if set;
# else the venv ${VMOE_TORCH_VENV:-~/.cache/vmoe/torch-venv} if it has torch; else, with
# --create-venv, that venv made now (python3 -m venv + pip install torch from PyPI, a large
# download); else Debian's /usr/bin/python3 (python3-torch).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=5
steps=20
warmup=3
threads=2
create_venv=0
configs=()

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() {
  echo "compare_torch: $*" >&2
  exit 2
}
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }

while (($#)); do
  case $1 in
    --rounds | --steps | --warmup | --threads)
      (($# >= 2)) || die "$1 needs a value"
      if [[ $1 == --warmup ]]; then
        [[ $2 =~ ^[0-9]+$ ]] || die "--warmup must be an integer >= 0, got '$2'"
      else
        positive "$1" "$2"
      fi
      declare "${1#--}=$2"
      shift 2
      ;;
    --create-venv)
      create_venv=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
      [[ -f $1 ]] || die "config '$1' not found"
      configs+=("$1")
      shift
      ;;
  esac
done
if ((${#configs[@]} == 0)); then
  configs=("$root/configs/experiments/fashion_vit_ti.textproto"
    "$root/configs/experiments/fashion_vmoe_ti.textproto")
fi

build_dir=${VMOE_BUILD_DIR:-$root/build}
vmoe=$build_dir/vmoe
[[ -x $vmoe ]] || die "$vmoe not found: build it first (launch/build.sh) or set VMOE_BUILD_DIR"

has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }
venv=${VMOE_TORCH_VENV:-$HOME/.cache/vmoe/torch-venv}
if [[ -n ${VMOE_TORCH_PYTHON:-} ]]; then
  py=$VMOE_TORCH_PYTHON
  has_torch "$py" || die "VMOE_TORCH_PYTHON=$py cannot import torch"
  source_note="VMOE_TORCH_PYTHON"
elif [[ -x $venv/bin/python ]] && has_torch "$venv/bin/python"; then
  py=$venv/bin/python
  source_note="venv $venv"
elif ((create_venv)); then
  echo "compare_torch: creating $venv and installing torch from PyPI (large download)" >&2
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet torch || die "pip install torch into $venv failed"
  py=$venv/bin/python
  source_note="venv $venv (just created)"
elif has_torch /usr/bin/python3; then
  py=/usr/bin/python3
  source_note="Debian python3-torch; --create-venv for PyPI's torch"
else
  die "no PyTorch: set VMOE_TORCH_PYTHON, pass --create-venv, or apt-get install python3-torch"
fi
torch_version=$("$py" -W 'ignore:Failed to initialize NumPy' -c 'import torch; print(torch.__version__)')

cores=$(nproc)  # before OMP_NUM_THREADS, which nproc obeys
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "vmoe ($vmoe) vs torch $torch_version ($py; $source_note)"
echo "$rounds rounds x $steps steps (warm-up $warmup), $threads threads, $cores cores"
for ((r = 1; r <= rounds; ++r)); do
  for i in "${!configs[@]}"; do
    c=${configs[$i]}
    "$vmoe" bench train --config "$c" --steps "$steps" --warmup "$warmup" --gemm-size 256 \
      --json >"$out/vmoe.$i.$r.json"
    "$py" "$root/bench/ref/train_step_torch.py" --config "$c" --threads "$threads" \
      --steps "$steps" --warmup "$warmup" >"$out/torch.$i.$r.json"
    "$py" - "$out/vmoe.$i.$r.json" "$out/torch.$i.$r.json" "$r" <<'PY'
import json, sys
v, t = (json.load(open(p)) for p in sys.argv[1:3])
vm, tm = v["step_ms"]["median"], t["median_step_ms"]
print(f"round {sys.argv[3]} {v['config']:<24} vmoe {vm:9.1f} ms   torch {tm:9.1f} ms   "
      f"torch/vmoe {tm / vm:5.2f}")
PY
  done
done

"$py" - "$out" "$rounds" "${#configs[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load = lambda impl, i, r: json.load(open(os.path.join(out, f"{impl}.{i}.{r}.json")))
runs = [[(load("vmoe", i, r), load("torch", i, r)) for r in range(1, rounds + 1)]
        for i in range(n)]
ms = lambda v, t: (v["step_ms"]["median"], t["median_step_ms"])
fastest = lambda v, t: (v["step_ms"]["min"], t["min_step_ms"])
print(f"\n{'config':<24} {'vmoe ms':>9} {'torch ms':>9} {'torch/vmoe':>11}   "
      f"{'vmoe min':>9} {'torch min':>9} {'ratio':>6}")
for rr in runs:
    per = [ms(v, t) for v, t in rr]
    low = [min(f[0] for f in (fastest(v, t) for v, t in rr)),
           min(f[1] for f in (fastest(v, t) for v, t in rr))]
    print(f"{rr[0][0]['config']:<24} {statistics.median(p[0] for p in per):9.1f} "
          f"{statistics.median(p[1] for p in per):9.1f} "
          f"{statistics.median(p[1] / p[0] for p in per):10.2f}x   "
          f"{low[0]:9.1f} {low[1]:9.1f} {low[1] / low[0]:5.2f}x")
print("(ms: medians over rounds of each run's median step; torch/vmoe: median of the per-round "
      "ratios, > 1 = vmoe faster; min: fastest single step of all rounds)")
dense = [i for i in range(n) if not runs[i][0][1]["moe_blocks"]]
for i in range(n):
    if not dense or not runs[i][0][1]["moe_blocks"]:
        continue
    d = dense[0]
    rate = lambda impl, j, r: (runs[j][r][0]["images_per_s"] if impl == 0
                               else runs[j][r][1]["images_per_s"])
    ratio = [statistics.median(rate(impl, i, r) / rate(impl, d, r) for r in range(rounds))
             for impl in (0, 1)]
    print(f"throughput {runs[i][0][0]['config']} / {runs[d][0][0]['config']}: "
          f"vmoe {ratio[0]:.2f}, torch {ratio[1]:.2f}  (median of per-round ratios)")
PY
