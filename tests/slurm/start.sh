#!/usr/bin/env bash
# Starts munged, slurmctld and slurmd (those not already running) and waits until the
# partition answers. Exit 0 when the cluster is up, 1 otherwise.
set -euo pipefail
source "$(dirname "$0")/env.sh"

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged --force
fi
running "$PACER_SLURM_DIR/run/slurmctld.pid" || slurmctld
running "$PACER_SLURM_DIR/run/slurmd.pid" || slurmd
for _ in $(seq 60); do
    if sinfo -h -o '%a %t' 2>/dev/null | grep -Eq '^up (idle|mix|alloc|comp)'; then
        exit 0
    fi
    sleep 0.5
done
echo "slurm: the cluster did not come up; see $PACER_SLURM_DIR/log/" >&2
exit 1
