#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for the test suite (and for trying --cluster by hand):
# munged, slurmctld and slurmd from Debian's slurm-wlm and munge packages, run as root, one
# partition "debug" holding this machine. Idempotent: a running cluster is left as it is.
#
#   sudo apt-get install -y slurm-wlm munge && sudo bash scripts/start_slurm.sh
#   sinfo; squeue                                   # then: tests/test_slurm.py runs
#   sudo bash scripts/start_slurm.sh stop           # stop the daemons
set -euo pipefail
CONF_DIR=/etc/slurm
STATE=/var/spool/slurm
NODE=$(hostname -s)
CPUS=$(nproc)
MEMORY_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

if [ "${1:-start}" = stop ]; then
  pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x munged || true
  exit 0
fi
for command in munged slurmctld slurmd sbatch; do
  command -v "$command" >/dev/null || { echo "error: $command not found: apt-get install -y slurm-wlm munge" >&2; exit 1; }
done

mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge "$CONF_DIR" "$STATE/ctld" "$STATE/d" /var/log/slurm
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0400 /etc/munge/munge.key
# Running daemons are asked, not looked up by name: a killed one can linger as a zombie.
munge -n >/dev/null 2>&1 || runuser -u munge -- munged --force  # --force: past a stale socket

cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
rm -f "$CONF_DIR/cgroup.conf"  # proctrack/linuxproc and task/none need no cgroups

scontrol ping 2>/dev/null | grep -q UP || slurmctld
pgrep -x -r R,S,D slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo; exit 0
  fi
  sleep 1
done
echo "error: the Slurm node did not become idle; see /var/log/slurm/" >&2
sinfo -N -l >&2 || true
exit 1
