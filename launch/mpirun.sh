#!/usr/bin/env bash
# Runs `vmoe train` on N MPI ranks with Open MPI's mpirun, on this machine or on several hosts:
# ranks spread evenly over the hosts, each rank bound to its own cores with one compute
# thread per core (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = cores per rank), so that ranks of
# one host never fight over cores. Everything after the options goes to `vmoe train`.
#
#   launch/mpirun.sh -n 4 --config configs/experiments/fashion_vmoe_ti.textproto --workdir w
#   launch/mpirun.sh -n 16 --hostfile hosts.txt --cores-per-host 32 --config ... --workdir ...
#
# Options (before the `vmoe train` arguments; `--` ends them explicitly):
#   -n, --ranks N          total ranks (default 2)
#   --hostfile FILE        Open MPI hostfile, one host per line (default: this machine only)
#   --hosts H1,H2,...      the same as a comma-separated list
#   --cores-per-host C     cores of each host (default: this machine's online cores)
#   --binary PATH          the vmoe binary (default: $VMOE_BUILD_DIR/vmoe, else build/vmoe)
#   --mpi-arg ARG          one more argument for mpirun (repeat it: --mpi-arg --mca
#                          --mpi-arg btl_tcp_if_include --mpi-arg eth0)
#   --dry-run              print the mpirun command line instead of running it
# The workdir must be on a file system that every host sees (rank 0 writes metrics and weights,
# all ranks write checkpoints); a run resumes from its newest checkpoint when started again.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks=2
hostfile=""
hosts=""
cores_per_host=$(getconf _NPROCESSORS_ONLN)  # not nproc: it reads OMP_NUM_THREADS
binary=${VMOE_BUILD_DIR:-$root/build}/vmoe
mpi_args=()
dry_run=0
usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}
need_value() {  # an option's value must be present
  [[ $# -ge 2 ]] || { echo "mpirun.sh: $1 needs a value" >&2; exit 2; }
}
positive() {  # NAME VALUE: an integer >= 1
  [[ $2 =~ ^[0-9]+$ && $2 -ge 1 ]] || {
    echo "mpirun.sh: $1 must be an integer >= 1, got '$2'" >&2
    exit 2
  }
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n | --ranks) need_value "$@"; ranks=$2; shift 2 ;;
    --hostfile) need_value "$@"; hostfile=$2; shift 2 ;;
    --hosts) need_value "$@"; hosts=$2; shift 2 ;;
    --cores-per-host) need_value "$@"; cores_per_host=$2; shift 2 ;;
    --binary) need_value "$@"; binary=$2; shift 2 ;;
    --mpi-arg) need_value "$@"; mpi_args+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage ;;
    --) shift; break ;;
    *) break ;;
  esac
done
positive "--ranks" "$ranks"
positive "--cores-per-host" "$cores_per_host"
if [[ -n $hostfile && -n $hosts ]]; then
  echo "mpirun.sh: give --hostfile or --hosts, not both" >&2
  exit 2
fi

# Hosts, in order; each gets ceil(ranks / hosts) ranks (the last may get fewer).
host_list=()
if [[ -n $hostfile ]]; then
  [[ -r $hostfile ]] || { echo "mpirun.sh: cannot read --hostfile '$hostfile'" >&2; exit 2; }
  while read -r host _; do
    [[ -z $host || $host == \#* ]] || host_list+=("$host")
  done <"$hostfile"
  [[ ${#host_list[@]} -gt 0 ]] || { echo "mpirun.sh: no host in '$hostfile'" >&2; exit 2; }
elif [[ -n $hosts ]]; then
  IFS=, read -r -a host_list <<<"$hosts"
fi
num_hosts=${#host_list[@]}
[[ $num_hosts -gt 0 ]] || num_hosts=1
ranks_per_host=$(((ranks + num_hosts - 1) / num_hosts))

cmd=(mpirun -n "$ranks")
[[ $(id -u) -eq 0 ]] && cmd+=(--allow-run-as-root)  # Open MPI refuses root without it
if [[ ${#host_list[@]} -gt 0 ]]; then
  # host:slots, so that each host takes ranks_per_host ranks whatever the hostfile says.
  spec=""
  for host in "${host_list[@]}"; do spec+="${spec:+,}$host:$ranks_per_host"; done
  cmd+=(--host "$spec")
fi
if [[ $ranks_per_host -le $cores_per_host ]]; then
  # Bound: ranks_per_host consecutive ranks per host, each on `threads` cores of its own.
  threads=$((cores_per_host / ranks_per_host))
  cmd+=(--map-by "ppr:$ranks_per_host:node:PE=$threads" --bind-to core)
else
  # More ranks than cores: binding would stack ranks on the first cores; let the kernel spread
  # them, and make a waiting rank yield its core (a busy-polling rank starves the one it waits
  # for: 40 ms per message instead of 0.5 ms, measured with 2 ranks per core). Filled host by
  # host, so that an expert group's consecutive ranks share a host.
  threads=1
  cmd+=(--oversubscribe --map-by slot --bind-to none --mca mpi_yield_when_idle 1)
fi
cmd+=(-x "OMP_NUM_THREADS=$threads" -x "OPENBLAS_NUM_THREADS=$threads")
cmd+=("${mpi_args[@]}" "$binary" train "$@")

if [[ $dry_run -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
[[ -x $binary ]] || {
  echo "mpirun.sh: no vmoe binary at '$binary' (build it, or set --binary / VMOE_BUILD_DIR)" >&2
  exit 2
}
echo "mpirun.sh: $ranks ranks on $num_hosts host(s), $ranks_per_host per host, $threads thread(s) each" >&2
exec "${cmd[@]}"
