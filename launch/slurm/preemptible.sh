# Sourced by the sbatch scripts of this folder: runs a job step so that a Slurm job can be
# preempted and continued. `run_preemptible CMD...` starts CMD (an srun of `vmoe train`) and
# forwards SIGUSR1 and SIGTERM from the batch shell to it (sbatch's --signal=B:USR1@T signals
# only the batch shell; srun passes the signal on to every task). `vmoe train` finishes its
# step, saves a checkpoint in the workdir and exits 0; after a SIGUSR1 this function then
# requeues the job (scontrol requeue), and the restarted script resumes from that checkpoint.
# SIGTERM (scancel, the time limit) saves but does not requeue. Returns CMD's exit status.

vmoe_stop_signal=""
vmoe_step_pid=""

vmoe_forward_signal() {  # SIGNAL: remember it and pass it on to the running step
  vmoe_stop_signal=$1
  echo "preemptible: SIG$1 received; asking the step to save a checkpoint and stop" >&2
  [[ -n $vmoe_step_pid ]] && kill "-$1" "$vmoe_step_pid" 2>/dev/null || true
}

run_preemptible() {
  vmoe_stop_signal=""
  trap 'vmoe_forward_signal USR1' USR1
  trap 'vmoe_forward_signal TERM' TERM
  "$@" &
  vmoe_step_pid=$!
  # A trapped signal interrupts `wait` (status > 128) while the step still runs: wait again
  # until it has ended, then once more for its own exit status (bash keeps it).
  while kill -0 "$vmoe_step_pid" 2>/dev/null; do
    wait "$vmoe_step_pid" || true
  done
  local status=0
  wait "$vmoe_step_pid" || status=$?
  vmoe_step_pid=""
  trap - USR1 TERM
  if [[ $vmoe_stop_signal == USR1 && $status -eq 0 && -n ${SLURM_JOB_ID:-} ]]; then
    echo "preemptible: checkpoint saved; requeueing job $SLURM_JOB_ID to resume from it" >&2
    # Ends this script (Slurm cancels the running batch script of a requeued job).
    scontrol requeue "$SLURM_JOB_ID"
  fi
  return "$status"
}
