#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz (clang, ASan + UBSan, build dir build-fuzz) and runs
# each for SECONDS (default 20) on its committed seed corpus. Fails on any crash, sanitizer
# report, timeout, out-of-memory or harness finding (see test/fuzz/fuzz_common.h).
#   launch/fuzz.sh            # CI: 20 s per target
#   launch/fuzz.sh 600        # longer run: 10 min per target (docs/hardening.md)
#   FUZZ_TARGETS="png jpeg" launch/fuzz.sh 60
#   FUZZ_TARGETS="checkpoint_bytes" launch/fuzz.sh 600   # raw-bytes HDF5 (not in CI: libhdf5 bugs)
# New inputs found during a run go to build-fuzz/corpus/<target>/ (not the committed corpus);
# a crashing input is saved as build-fuzz/artifacts/<target>/crash-*.
set -euo pipefail
seconds=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-"config idx cifar jpeg png hdf5_shard weights checkpoint"}
jobs=${FUZZ_BUILD_JOBS:-$(nproc)}

"$root/launch/install-deps.sh" --with-fuzz
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
# -O1 with line tables only: fast to build on small CI machines, symbolized stacks on a crash.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DVMOE_FUZZ=ON -DVMOE_BUILD_TESTS=OFF -DVMOE_CUDA=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$jobs" --target $(printf 'fuzz_%s ' $targets)

# Open MPI (linked through parallel HDF5) keeps allocations until exit: leak reports off.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

status=0
for t in $targets; do
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="$build/fuzz_$t.log"
  # -timeout: one input may take at most 10 s; -rss_limit_mb: 2.5 GB (an 8192 x 8192 RGB image
  # is 192 MiB, the largest any reader accepts).
  corpus=$root/test/fuzz/corpus/$t
  # Raw-bytes HDF5 targets: any valid HDF5 file is a seed; libhdf5 itself mallocs what a damaged
  # file's metadata declares (terabytes): let such a malloc fail as it does in production (NULL -> an HDF5 error -> Hdf5Error) instead
  # of reporting it. Memory errors inside libhdf5 are still reported (docs/hardening.md).
  extra=()
  asan=$ASAN_OPTIONS
  case $t in
    *_bytes)
      corpus=$root/test/fuzz/corpus/h5_files
      extra=(-malloc_limit_mb=1048576)
      asan=$ASAN_OPTIONS:allocator_may_return_null=1
      ;;
  esac
  if ASAN_OPTIONS=$asan "$build/test/fuzz/fuzz_$t" "$work" "$corpus" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -max_len=16384 \
      -print_final_stats=1 "${extra[@]}" \
      -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz_$t: ok, $execs executions in ${seconds}s"
  else
    echo "fuzz_$t: FAILED (log: $log; inputs: $artifacts/)"
    grep -m 20 -E 'ERROR|FUZZ FINDING|SUMMARY|runtime error' "$log" || tail -20 "$log"
    status=1
  fi
done
exit $status
