#!/usr/bin/env bash
# A real Slurm cluster started inside the test from Debian's packages: munged, slurmctld and
# one slurmd on this machine, every file (key, config, state, logs) in a temporary folder, on
# ports of its own. Then launch/slurm/train.sbatch, as a user submits it:
#   1. a 2-task V-MoE run (srun --mpi=pmix) that must finish with its per-step metrics, a test
#      accuracy and a final checkpoint written by both ranks;
#   2. the same run sent SIGUSR1 while it trains (`scancel --batch --signal=USR1`, what
#      --signal=B:USR1@120 does before the time limit): it must save, requeue itself, resume
#      from the checkpoint in its workdir and end exactly where run 1 ended.
#
#   test_slurm.sh VMOE_BINARY SOURCE_DIR
# Exit 0 = passed, 77 = skipped (reason printed: not root, packages missing, no data), anything
# else = failed. The daemons, jobs and temporary files are removed on every exit.
set -euo pipefail
binary=$1
source_dir=$2
skip() {
  echo "SKIPPED: $*"
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "running slurmd and munged needs root"
for tool in munged slurmctld slurmd sbatch scontrol squeue; do
  command -v "$tool" >/dev/null ||
    skip "$tool is not installed (launch/install-deps.sh installs slurm-wlm and munge)"
done
data=/usr/share/datasets/fashion-mnist
[[ -d $data ]] || skip "Fashion-MNIST is not installed at $data"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmoe_test_slurm.XXXXXX")
chmod 755 "$tmp"
export SLURM_CONF=$tmp/slurm.conf
stop_daemon() {  # PIDFILE: ends the daemon that we started
  [[ -s $1 ]] && kill "$(cat "$1")" 2>/dev/null || true
}
cleanup() {
  local status=$?
  if [[ -s $tmp/slurmctld.pid ]]; then
    scancel --quiet --user=root 2>/dev/null || true
    sleep 1
  fi
  stop_daemon "$tmp/slurmd.pid"
  stop_daemon "$tmp/slurmctld.pid"
  stop_daemon "$tmp/munge/munged.pid"
  if [[ $status -ne 0 && $status -ne 77 ]]; then
    echo "test_slurm: failed; logs:"
    tail -n 15 "$tmp"/job*.out "$tmp"/slurmctld.log "$tmp"/slurmd.log 2>/dev/null || true
  fi
  sleep 1
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge: a fresh key; --force because it runs as root here.
mkdir -m 700 "$tmp/munge" "$tmp/state" "$tmp/spool"
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
  --seed-file="$tmp/munge/munged.seed" ||
  skip "munged does not start here: $(tail -n 1 "$tmp/munge/munged.log" 2>/dev/null)"

node=$(hostname -s)
port=$((20000 + ($$ % 5000) * 2))
# cred_expire 5 s: Slurm holds a requeued job that long (default 120 s); sched_interval 1 s:
# the scheduler then starts it at once. No cgroups: processes are tracked by their parents,
# tasks bound to cores by sched_setaffinity.
cat >"$SLURM_CONF" <<EOF
ClusterName=vmoetest
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
NodeName=$node $(slurmd -C | head -n 1 | cut -d' ' -f2-) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -c || { echo "slurmctld did not start"; exit 1; }
slurmd || { echo "slurmd did not start"; exit 1; }
for _ in $(seq 60); do
  [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break
  sleep 0.5
done
[[ $(sinfo -h -o %T) == idle ]] || { echo "the node never became idle: $(sinfo -h)"; exit 1; }

job_state() { scontrol show job "$1" 2>/dev/null | grep -o "JobState=[A-Z_]*" | cut -d= -f2 || true; }
# Waits up to SECONDS for job ID to reach a final state; prints it.
wait_job() {
  local state=""
  for _ in $(seq $((2 * $2))); do
    state=$(job_state "$1")
    case $state in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
    sleep 0.5
  done
  echo "$state"
}

device=()
[[ ${VMOE_TEST_DEVICE:-} == cpu_strict ]] && device=(--set train.device=CPU_STRICT)
# 1000 steps of a 2-block V-MoE (E 8, Every-2) on 2 tasks, constant learning rate 2e-3 (no
# warmup: every step moves the weights), every step logged. Long enough that job 2 is still
# training when the signal arrives: on a fast machine 40 steps took under a second and 300
# steps 4 s, while the signal, sent once 3 steps were logged, reached slurmctld 5 s after the
# job started on a machine busy with other tests.
steps=1000
submit() {  # NAME: submits train.sbatch as a user would; prints the job id
  sbatch --parsable --job-name="$1" --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 \
    --time=10 --output="$tmp/$1.out" --chdir="$source_dir" \
    --export=ALL,VMOE_ROOT="$source_dir",VMOE_BUILD_DIR="$(dirname "$binary")" \
    "$source_dir/launch/slurm/train.sbatch" \
    "$source_dir/configs/experiments/fashion_vmoe_ti.textproto" "$tmp/$1" \
    --set train.num_steps=$steps --set train.log_every_steps=1 --set model.num_layers=2 \
    --set data.batch_size=32 --set data.num_train_examples=1024 --set eval.num_examples=200 \
    --set checkpoint.keep=0 --set schedule.kind=CONSTANT --set schedule.warmup_steps=0 \
    --set output.progress=LINES "${device[@]}"
}

echo "test_slurm: job 1, a 2-task run to the end"
job1=$(submit job1)
state=$(wait_job "$job1" 200)
[[ $state == COMPLETED ]] || { echo "job 1 ended $state"; exit 1; }
grep -q "test accuracy:" "$tmp/job1.out" || { echo "job 1 printed no test accuracy"; exit 1; }
final=$tmp/job1/checkpoints/ckpt_$(printf %08d $steps).h5
[[ -f $final ]] || { echo "job 1 left no final checkpoint $final"; exit 1; }
"$binary" ckpt ls "$final" >"$tmp/ckpt_ls.txt"
grep -q "written by 2 ranks" "$tmp/ckpt_ls.txt" || {
  echo "job 1's checkpoint was not written by its 2 ranks: $(sed -n 3p "$tmp/ckpt_ls.txt")"
  exit 1
}

echo "test_slurm: job 2, the same run sent SIGUSR1 while it trains"
job2=$(submit job2)
for _ in $(seq 240); do  # until a few steps are logged: the stop handler is installed then
  [[ -f $tmp/job2/metrics.jsonl && $(wc -l <"$tmp/job2/metrics.jsonl") -ge 3 ]] && break
  sleep 0.25
done
scancel --batch --signal=USR1 "$job2"
state=$(wait_job "$job2" 200)
[[ $state == COMPLETED ]] || { echo "job 2 ended $state"; exit 1; }
grep -q "stopped by a signal after step" "$tmp/job2.out" ||
  { echo "job 2 finished without stopping on SIGUSR1 (it trained too fast?)"; exit 1; }
grep -q "requeueing job $job2" "$tmp/job2.out" || { echo "job 2 did not requeue itself"; exit 1; }
restarts=$(scontrol show job "$job2" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
[[ $restarts == 1 ]] || { echo "job 2 ran $((restarts + 1)) times, expected 2"; exit 1; }
grep -q "resuming from .*ckpt_" "$tmp/job2.out" || { echo "job 2 did not resume"; exit 1; }

# Same 2 ranks, same order of every reduction: the preempted job must log every step once
# and agree with job 1 to float rounding (1e-6 relative), the test accuracy exactly.
python3 - "$tmp/job1/metrics.jsonl" "$tmp/job2/metrics.jsonl" "$steps" <<'EOF'
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
steps = int(sys.argv[3])
for name, run in (("job 1", a), ("job 2", b)):
    logged = [j["step"] for j in run]
    assert logged == list(range(1, steps + 1)), f"{name} logged steps {logged}"
for x, y in zip(a, b):
    for key in ("train/loss", "train/aux_loss", "train/grad_norm"):
        assert abs(x[key] - y[key]) <= 1e-6 * max(abs(x[key]), 1e-3), \
            f"step {x['step']} {key}: {x[key]} vs {y[key]}"
assert fa and fb, "a job wrote no final evaluation"
assert fa["eval/accuracy"] == fb["eval/accuracy"], (fa["eval/accuracy"], fb["eval/accuracy"])
print(f"test_slurm: {steps} steps agree after the requeue; accuracy {fa['eval/accuracy']:.4f}")
EOF
echo "test_slurm: passed"
