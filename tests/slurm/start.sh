#!/usr/bin/env bash
# A one-node Slurm cluster for the tests: munged, slurmctld and slurmd on this host, everything
# (config, munge key, state, logs, pid files) under DIR. Installs Debian's packages where missing
# (root + apt-get). Waits until the node is idle; prints the export line for SLURM_CONF.
# A requeued task starts again after cred_expire (here 10 s; Slurm's default is 120 s).
#   tests/slurm/start.sh DIR          stop with tests/slurm/stop.sh DIR
set -euo pipefail
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
for tool in munged slurmctld slurmd sbatch; do
  if ! command -v "$tool" >/dev/null; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "slurm: $tool missing and no root + apt-get to install it" >&2; exit 3; }
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >"$dir/apt.log" 2>&1 \
      || { timeout 300 apt-get update -q >>"$dir/apt.log" 2>&1 && timeout 300 apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >>"$dir/apt.log" 2>&1; } \
      || { echo "slurm: apt-get could not install slurmctld slurmd slurm-client munge (see $dir/apt.log)" >&2; exit 3; }
    break
  fi
done
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"
head -c 1024 /dev/urandom >"$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
host="$(hostname -s)"
cpus="$(nproc)"
memory_mb="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cat >"$dir/slurm.conf" <<CONF
ClusterName=lpi-claims-tests
SlurmctldHost=$host
SlurmctldPort=$(port)
SlurmdPort=$(port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerParameters=sched_interval=1
MessageTimeout=30
KillWait=2
MinJobAge=30
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=tests Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
for _ in $(seq 120); do
  state="$(sinfo -h -N -o %T 2>/dev/null | head -1)"
  [ "$state" = idle ] && { echo "export SLURM_CONF=$dir/slurm.conf"; exit 0; }
  sleep 0.5
done
echo "slurm: the node is not idle after 60 s (state: ${state:-none}); logs: $dir/slurmctld.log, $dir/slurmd.log" >&2
exit 4
