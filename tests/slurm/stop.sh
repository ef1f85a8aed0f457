#!/usr/bin/env bash
# Stops slurmd, slurmctld and munged by the process ids in their pid files.
set -uo pipefail
source "$(dirname "$0")/env.sh"

stop() {
    local pidfile="$1"
    [ -s "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
}
stop "$PACER_SLURM_DIR/run/slurmd.pid"
stop "$PACER_SLURM_DIR/run/slurmctld.pid"
[ "${1:-}" = "--keep-munge" ] || stop /run/munge/munged.pid
