#!/usr/bin/env bash
# Writes the munge key and slurm.conf of a one-node cluster on this machine (as root).
# Idempotent: an existing munge key is kept; slurm.conf is rewritten only when it changes.
set -euo pipefail
source "$(dirname "$0")/env.sh"
host="$(hostname -s)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))

mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge "$(dirname "$SLURM_CONF_FILE")"
if [ ! -s /etc/munge/munge.key ]; then
    head -c 1024 /dev/urandom > /etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
mkdir -p "$PACER_SLURM_DIR"/{state,spool,log,run}

conf="$(cat <<CONF
# Written by tests/slurm/configure.sh: a one-node cluster for Pacer's sweep tests.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=15  # how long a requeued job waits before it may start again (default 120 s)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxArraySize=10001
MaxJobCount=20000
MinJobAge=60
KillWait=10
StateSaveLocation=$PACER_SLURM_DIR/state
SlurmdSpoolDir=$PACER_SLURM_DIR/spool
SlurmctldLogFile=$PACER_SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$PACER_SLURM_DIR/log/slurmd.log
SlurmctldPidFile=$PACER_SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$PACER_SLURM_DIR/run/slurmd.pid
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)"
if [ "$(cat "$SLURM_CONF_FILE" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > "$SLURM_CONF_FILE"
fi
