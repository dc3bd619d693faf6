#!/usr/bin/env bash
# Multi-host training on one machine: two "hosts" made as network namespaces joined by a veth
# link, Open MPI between them over TCP only (mpirun in host a starts host b's daemon through a
# launch agent that enters b's namespace, as ssh would on a cluster), launched by
# launch/mpirun.sh. A 4-rank V-MoE run (2 ranks per host, experts split over all 4) saves a
# collective checkpoint on the shared file system, then a rank on host b fails; the run is
# resumed on host a alone and must end where an uninterrupted 2-host run ends: the same
# per-step metrics and the same test accuracy.
#
#   test_multihost.sh VMOE_BINARY SOURCE_DIR
# Exit 0 = passed, 77 = skipped (reason printed: not root, no network namespaces, no data),
# anything else = failed. Namespaces and temporary files are removed on every exit.
set -euo pipefail
binary=$1
source_dir=$2
skip() {
  echo "SKIPPED: $*"
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "creating network namespaces needs root"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
command -v mpirun >/dev/null || skip "Open MPI (mpirun) is not installed"
data=/usr/share/datasets/fashion-mnist
[[ -d $data ]] || skip "Fashion-MNIST is not installed at $data"

# launch/mpirun.sh's choices, from its printed command line: bound ranks with their share of
# the cores as threads; oversubscribed ranks unbound, yielding, one thread; the arguments after
# the options passed to `vmoe train`; the root flag exactly when run as root.
dry() { "$source_dir/launch/mpirun.sh" --dry-run --binary "$binary" "$@"; }
expect() {  # TEXT PATTERN [!]: TEXT contains PATTERN (or, with "!", does not)
  if [[ ${3:-} == "!" ]]; then
    [[ $1 != *"$2"* ]] || { echo "mpirun.sh: '$2' should not be in: $1"; exit 1; }
  else
    [[ $1 == *"$2"* ]] || { echo "mpirun.sh: '$2' missing from: $1"; exit 1; }
  fi
}
bound=$(dry -n 2 --cores-per-host 8 --config c.textproto --set a.b=1)
expect "$bound" "--map-by ppr:2:node:PE=4 --bind-to core"
expect "$bound" "OMP_NUM_THREADS=4 -x OPENBLAS_NUM_THREADS=4"
expect "$bound" "--oversubscribe" !
expect "$bound" "$binary train --config c.textproto --set a.b=1"
expect "$bound" "--allow-run-as-root"
spread=$(dry -n 6 --hosts h1,h2 --cores-per-host 2 --workdir w)
expect "$spread" "--host h1:3\\,h2:3"
expect "$spread" "--oversubscribe --map-by slot --bind-to none --mca mpi_yield_when_idle 1"
expect "$spread" "OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1"
if dry -n 0 >/dev/null 2>&1; then
  echo "mpirun.sh accepted -n 0"
  exit 1
fi

# Names unique to this process: parallel tests (and a stale run) cannot collide.
id=$$
ns_a=vmoe-mh$id-a
ns_b=vmoe-mh$id-b
veth_a=vmh${id}a
veth_b=vmh${id}b
subnet=10.231.$((id % 250))
host_a=$subnet.1
host_b=$subnet.2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmoe_test_multihost.XXXXXX")
cleanup() {
  local status=$?
  ip netns pids "$ns_a" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns pids "$ns_b" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns_a" 2>/dev/null || true  # deleting a namespace deletes its veth end too
  ip netns del "$ns_b" 2>/dev/null || true
  if [[ $status -ne 0 && $status -ne 77 ]]; then
    echo "test_multihost: failed; the outputs were:"
    tail -n 20 "$tmp"/*.txt 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$ns_a" 2>"$tmp/netns.err"; then
  skip "the kernel refuses network namespaces: $(head -n 1 "$tmp/netns.err")"
fi
ip netns add "$ns_b"
ip link add "$veth_a" type veth peer name "$veth_b"
ip link set "$veth_a" netns "$ns_a"
ip link set "$veth_b" netns "$ns_b"
ip -n "$ns_a" addr add "$host_a/24" dev "$veth_a"
ip -n "$ns_b" addr add "$host_b/24" dev "$veth_b"
for ns in "$ns_a" "$ns_b"; do
  ip -n "$ns" link set lo up
done
ip -n "$ns_a" link set "$veth_a" up
ip -n "$ns_b" link set "$veth_b" up

# The launch agent: Open MPI runs `agent HOST COMMAND` for every remote host (as `ssh HOST
# COMMAND`); this one enters HOST's namespace, with a hostname of its own (UTS namespace).
cat >"$tmp/agent.sh" <<EOF
#!/usr/bin/env bash
case \$1 in
  $host_a) ns=$ns_a name=vmoe-host-a ;;
  $host_b) ns=$ns_b name=vmoe-host-b ;;
  *) echo "agent: unknown host \$1" >&2; exit 1 ;;
esac
shift
echo "agent: \$name: \$*" >>"$tmp/agent.log"
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$name && \$*"
EOF
chmod +x "$tmp/agent.sh"

# Runs launch/mpirun.sh ARGS... as host a (in its namespace, under its own hostname).
on_host_a() {
  ip netns exec "$ns_a" unshare --uts sh -c 'hostname vmoe-host-a && exec "$@"' sh \
    "$source_dir/launch/mpirun.sh" --binary "$binary" "$@"
}
# TCP only, on the veth subnet, for both Open MPI's own wire-up and MPI messages.
tcp_only=(--mpi-arg --mca --mpi-arg plm_rsh_agent --mpi-arg "$tmp/agent.sh"
  --mpi-arg --mca --mpi-arg oob_tcp_if_include --mpi-arg "$subnet.0/24"
  --mpi-arg --mca --mpi-arg btl --mpi-arg tcp,self
  --mpi-arg --mca --mpi-arg btl_tcp_if_include --mpi-arg "$subnet.0/24")
# The two hosts share this machine's cores: each has half of them (with 2 cores, 1 core for 2
# ranks: mpirun.sh then lets waiting ranks yield their core).
cores=$(getconf _NPROCESSORS_ONLN)
two_hosts=(-n 4 --hosts "$host_a,$host_b" --cores-per-host "$(((cores + 1) / 2))" "${tcp_only[@]}")

# 6 steps of a 2-block V-MoE (E 8, Every-2: block 1) on 4 ranks, batch 32 = one routing group
# of 8 images per rank, constant learning rate 2e-3 (no warmup: every step moves the weights),
# every step logged, a checkpoint after step 3.
device=()
[[ ${VMOE_TEST_DEVICE:-} == cpu_strict ]] && device=(--set train.device=CPU_STRICT)
run_args=(--config "$source_dir/configs/experiments/fashion_vmoe_ti.textproto"
  --set train.num_steps=6 --set train.log_every_steps=1 --set model.num_layers=2
  --set data.batch_size=32 --set data.num_train_examples=512 --set eval.num_examples=200
  --set checkpoint.every_steps=3 --set checkpoint.keep=0 --set checkpoint.at_end=false
  --set schedule.kind=CONSTANT --set schedule.warmup_steps=0
  --set output.progress=LINES "${device[@]}")

echo "test_multihost: uninterrupted run, 4 ranks on 2 hosts (no checkpoint)"
on_host_a "${two_hosts[@]}" --workdir "$tmp/straight" "${run_args[@]}" \
  --set checkpoint.every_steps=0 >"$tmp/straight.txt" 2>&1 || { echo "the uninterrupted run failed"; exit 1; }
grep -q "agent: vmoe-host-b: .*orted" "$tmp/agent.log" || {
  echo "mpirun did not start a daemon on host b through the launch agent"
  exit 1
}

echo "test_multihost: the same run on 2 hosts, rank 2 (host b) failing after the step-3 checkpoint"
if on_host_a "${two_hosts[@]}" --mpi-arg -x --mpi-arg VMOE_TEST_FAIL_AT=2:3 \
  --workdir "$tmp/resumed" "${run_args[@]}" >"$tmp/failed.txt" 2>&1; then
  echo "the run with an injected failure did not fail"
  exit 1
fi
grep -q "injected failure at step 3" "$tmp/failed.txt" || {
  echo "the failing run ended for another reason"
  exit 1
}
checkpoint=$tmp/resumed/checkpoints/ckpt_00000003.h5
[[ -f $checkpoint ]] || { echo "no checkpoint of step 3 in $tmp/resumed/checkpoints"; exit 1; }
"$binary" ckpt ls "$checkpoint" >"$tmp/ckpt_ls.txt"
grep -q "written by 4 ranks" "$tmp/ckpt_ls.txt" || {
  echo "the step-3 checkpoint was not written by the 4 ranks: $(sed -n 3p "$tmp/ckpt_ls.txt")"
  exit 1
}

echo "test_multihost: resumed on host a alone (4 ranks)"
on_host_a -n 4 --workdir "$tmp/resumed" "${run_args[@]}" >"$tmp/resumed.txt" 2>&1 || {
  echo "the resumed run failed"
  exit 1
}
grep -q "resuming from .*ckpt_00000003.h5 (step 3)" "$tmp/resumed.txt" || {
  echo "the run on host a did not resume from the step-3 checkpoint"
  exit 1
}

# Same rank count, same reduction order: the steps must agree to float rounding (1e-6
# relative; a wrong resume, e.g. a lost optimizer state or data position, changes losses by
# far more), and the test accuracy exactly.
python3 - "$tmp/straight/metrics.jsonl" "$tmp/resumed/metrics.jsonl" <<'EOF'
import json, sys
def read(path):
    train, final = [], None
    for line in open(path):
        j = json.loads(line)
        if "train/loss" in j:
            train.append(j)
        if "eval/accuracy" in j:
            final = j
    return train, final
(a, fa), (b, fb) = read(sys.argv[1]), read(sys.argv[2])
# Each step once, in order: a run that started over instead of resuming logs 1-3 twice.
for name, run in (("uninterrupted run", a), ("interrupted + resumed run", b)):
    logged = [j["step"] for j in run]
    assert logged == list(range(1, 7)), f"{name} logged steps {logged}"
for x, y in zip(a, b):
    for key in ("train/loss", "train/aux_loss", "train/grad_norm", "moe/block_01/load_loss"):
        assert abs(x[key] - y[key]) <= 1e-6 * max(abs(x[key]), 1e-3), \
            f"step {x['step']} {key}: {x[key]} vs {y[key]}"
assert fa and fb, "a run wrote no final evaluation"
assert fa["eval/accuracy"] == fb["eval/accuracy"], (fa["eval/accuracy"], fb["eval/accuracy"])
print(f"test_multihost: 6 steps agree; loss {a[-1]['train/loss']:.6f}, "
      f"accuracy {fa['eval/accuracy']:.4f}")
EOF
echo "test_multihost: passed"
