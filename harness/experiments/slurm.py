"""Slurm's command-line tools, asked whether the controller answers and what the queue holds.

Apart from `harness.experiments.launchers` (which submits through submitit and runs cells) so that
`pacer status` reads the queue without importing submitit or torch."""

from __future__ import annotations

import shutil
import subprocess

from harness.core.errors import PacerUserError

SLURM_COMMANDS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"})


def check_slurm() -> None:
    """Raise `PacerUserError` unless Slurm's commands exist and the controller answers."""
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        raise PacerUserError(f"launcher=slurm needs Slurm's commands on PATH; missing: {', '.join(missing)}")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise PacerUserError("the Slurm controller did not answer `scontrol ping` within 30 s") from None
    answer = (ping.stdout + ping.stderr).strip()
    if ping.returncode != 0 or " is UP" not in answer:
        raise PacerUserError(f"the Slurm controller is not reachable: {_first_line(answer) or 'scontrol ping failed'}")


def slurm_queue(job_name: str) -> dict[str, str]:
    """Job id (array tasks as `<job>_<task>`) -> Slurm state, for the queued and running jobs."""
    out = subprocess.run(["squeue", "-h", "-r", "-n", job_name, "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise PacerUserError(f"squeue failed: {_first_line(out.stderr) or out.returncode}")
    return dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())


def queue_state(slurm_state: str | None) -> str | None:
    """`pending`, `running` or None (not in the queue) for a Slurm state."""
    if slurm_state in QUEUED_STATES:
        return "pending"
    if slurm_state in RUNNING_STATES:
        return "running"
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
