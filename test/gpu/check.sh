#!/usr/bin/env bash
# The GPU check (issue 12): on a machine with one NVIDIA GPU, run the whole suite on the GPU and
# benchmark a V-MoE-B/16-shaped training step. Writes summary.md and the logs to $OUT (or the
# first argument) and finishes in under 8 minutes.
#
# Binaries: built here when this machine can (cmake, nvcc and the Debian -dev packages vmoe
# builds against); otherwise taken from gpu-bundle/ (made by launch/gpu_bundle.sh on a build
# machine and carried here), with the CUDA libraries (cuBLASLt, cuDNN, NCCL) found on this
# machine: in the toolkit or in the nvidia-* Python wheels of its PyTorch. Says what is missing.
#
# Steps: `vmoe info`; every test with VMOE_TEST_DEVICE=cuda (each op against the CPU reference,
# the MoE layer and 20 training steps GPU vs CPU, checkpoints from device memory) plus the
# GPU-only tests (tag [.gpu]); the bf16 GEMM rate of this GPU; the B/16 step (224 px, E 8, k 2,
# Every-2, bf16, the largest batch that fits) with images/s, model FLOPs and MFU against that
# rate; the share of routing + dispatch + combine in the MoE layer at B/16 shapes.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-${OUT:-$root/gpu-check-out}}
mkdir -p "$out"
summary=$out/summary.md
start=$(date +%s)
log() { echo "$*" | tee -a "$summary"; }
: >"$summary"
log "# vmoe GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1 ||
  { log "no NVIDIA GPU or driver here (nvidia-smi failed): nothing to check"; exit 1; }
log "GPU: $(cat "$out/gpu.txt")"

# ---- binaries ----
build_dir=
if command -v cmake >/dev/null && command -v nvcc >/dev/null &&
   cmake -S "$root" -B "$root/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVMOE_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES=native >"$out/configure.log" 2>&1; then
  log "build: configured here; building (log: build.log)"
  cmake --build "$root/build-gpu" -j "$(nproc)" >"$out/build.log" 2>&1 ||
    { log "build failed: see build.log"; tail -20 "$out/build.log"; exit 1; }
  build_dir=$root/build-gpu
elif [[ -f "$root/gpu-bundle/manifest" ]]; then
  log "build: cannot build here (configure.log says what is missing:" \
      "$(grep -m1 -E 'Could NOT find|not found|No CMAKE' "$out/configure.log" 2>/dev/null || echo 'no cmake/nvcc')); using gpu-bundle/"
  # shellcheck disable=SC1091
  source "$root/gpu-bundle/manifest"
  log "bundle: commit $commit, CUDA architecture $arch"
  # The bundle's ctest files and compiled-in paths name the build machine's folders.
  for pair in "$source_dir:$root" "$build_dir:$root/gpu-bundle/build"; do
    from=${pair%%:*} to=${pair#*:}
    if [[ ! -e "$from" ]]; then mkdir -p "$(dirname "$from")" && ln -s "$to" "$from"; fi
  done
  # CUDA libraries of this machine: the toolkit's, else the nvidia-* wheels' (PyTorch's).
  cuda_libs=()
  for lib in libcublasLt.so.13 libcublas.so.13 libcudnn.so.9 libnccl.so.2; do
    found=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
              /opt /usr/local/lib /usr/lib/python3*/ -name "$lib*" 2>/dev/null | head -1)
    if [[ -z "$found" ]]; then log "missing on this machine: $lib"; else cuda_libs+=("$(dirname "$found")"); fi
  done
  extra=$(printf '%s\n' "${cuda_libs[@]}" | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$root/gpu-bundle/lib${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  build_dir=$root/gpu-bundle/build
else
  log "cannot build here and no gpu-bundle/ was carried: run launch/gpu_bundle.sh on a build" \
      "machine and carry gpu-bundle/. configure.log:"
  tail -5 "$out/configure.log" | tee -a "$summary"
  exit 1
fi
vmoe=$build_dir/launch/vmoe
"$vmoe" info >"$out/info.txt" 2>&1
log '```'; cat "$out/info.txt" >>"$summary"; log '```'

# ---- the suite on the GPU ----
export VMOE_TEST_DEVICE=cuda OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
suite_start=$(date +%s)
# MPI tests need Open MPI's launcher and several GPUs for NCCL (one GPU here): left out.
ctest --test-dir "$build_dir" -j 8 -LE mpi --timeout 240 --output-on-failure >"$out/suite.log" 2>&1
suite_rc=$?
log "suite on cuda: $(grep -E 'tests passed|tests failed' "$out/suite.log" | tail -1)" \
    "($(($(date +%s) - suite_start)) s, rc $suite_rc; suite.log)"
grep -E '^\s+[0-9]+ - ' "$out/suite.log" | head -40 >>"$summary"
# The hidden device tests: the CUDA backend (memory, GEMMs, error slot), the model GPU vs CPU,
# NCCL on one rank; the watchdog test aborts a communicator, so it runs in a process of its own.
gpu_rc=0
for run in "gpu/test_gpu [cuda]" "gpu/test_gpu_training [cuda]" "parallel/test_nccl [.gpu]" \
           "parallel/test_nccl [.gpu_abort]"; do
  exe=$build_dir/test/${run%% *} tag=${run#* }
  if [[ ! -x "$exe" ]]; then log "missing test executable: $exe"; gpu_rc=1; continue; fi
  if "$exe" "$tag" >>"$out/gpu_only.log" 2>&1; then result=passed; else result=FAILED; gpu_rc=1; fi
  log "GPU-only tests $run: $result"
done

# ---- benchmarks ----
bench=$build_dir/bench
"$bench/bench_gemm" --device cuda --dtype bf16 --m 8192 --n 8192 --k 8192 --reps 10 \
  >"$out/gemm_bf16.json" 2>>"$out/bench.log"
"$bench/bench_gemm" --device cuda --dtype f32 --m 8192 --n 8192 --k 8192 --reps 5 \
  >"$out/gemm_f32.json" 2>>"$out/bench.log"
b16=(--image-size 224 --channels 3 --patch 16 --hidden 768 --mlp 3072 --heads 12 --layers 12
     --classes 1000 --experts 8 --k 2 --moe-every 2 --device cuda --precision bf16 --steps 10)
"$bench/bench_train_step" "${b16[@]}" --batch 0 --max-batch 1024 >"$out/step_b16.json" 2>>"$out/bench.log"
"$bench/bench_moe_layer" --device cuda --precision bf16 --batch 64 --tokens 197 --dim 768 \
  --mlp 3072 --experts 8 --k 2 --reps 20 >"$out/moe_layer.txt" 2>>"$out/bench.log"
python3 - "$out" >>"$summary" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text().strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{name}: {e}"}
gemm, gemm32, step = load("gemm_bf16.json"), load("gemm_f32.json"), load("step_b16.json")
print("\n| figure | value |\n| --- | --- |")
print(f"| bf16 GEMM 8192^3 (this GPU, our cuBLASLt path) | {gemm.get('tflops', gemm.get('error'))} TFLOP/s |")
print(f"| f32 GEMM 8192^3 | {gemm32.get('tflops', gemm32.get('error'))} TFLOP/s |")
if "error" not in step:
    mfu = step["achieved_tflops"] / gemm["tflops"] if "tflops" in gemm else float("nan")
    print(f"| V-MoE-B/16 step (224 px, E 8, k 2, Every-2, bf16), batch {step['batch']} | "
          f"{step['median_step_ms']:.1f} ms median ({step['min_step_ms']:.1f}-{step['max_step_ms']:.1f}) |")
    print(f"| images/s | {step['images_per_s']:.0f} |")
    print(f"| model FLOPs per step (counted GEMMs, fwd+bwd) | {step['flops_per_step'] / 1e12:.2f} TFLOP |")
    print(f"| achieved | {step['achieved_tflops']:.1f} TFLOP/s |")
    print(f"| MFU vs the measured bf16 GEMM rate (target >= 40%) | {100 * mfu:.1f}% |")
    print(f"| peak device memory | {step['peak_device_bytes'] / 2**30:.1f} GiB |")
else:
    print(f"| B/16 step | {step['error']} |")
PY
log ""
log "MoE layer at B/16 shapes (target: routing + dispatch + combine <= 10%):"
log '```'; cat "$out/moe_layer.txt" >>"$summary"; log '```'
[[ -s "$out/bench.log" ]] && { log "benchmark errors:"; tail -5 "$out/bench.log" | tee -a "$summary"; }
log "total $(($(date +%s) - start)) s"
[[ $suite_rc -eq 0 && $gpu_rc -eq 0 ]]
