"""Where a sweep's jobs run: in this process, as local background processes, or on Slurm.

All three run `SweepTask`, a submitit `Checkpointable`: on SIGUSR2/SIGTERM the run saves a
checkpoint at its next step boundary (`harness.checkpoint`), and under submitit the task then
hands over to submitit's own handler, which requeues the job (same Slurm job id) to continue
from that checkpoint."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.job_environment import SignalHandler

from harness.errors import PacerUserError

SLURM_COMMANDS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
SACCT_NOISE = "Bypassing sacct error"
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED"})
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"})

JobConfig = dict[str, object]


class SweepTask(submitit.helpers.Checkpointable):
    """One grid cell as a submitit job: `run_job` with resume, requeued when preempted."""

    def __init__(self, dry: bool = False):
        self.dry = dry
        """Return at once without training (to time or test submission itself)."""

    def __call__(self, cfg: JobConfig) -> str:
        if self.dry:
            return "dry"
        from harness.job import run_job

        record = run_job(cfg)
        if record["status"] == "preempted":
            _requeue_through_submitit()
        return str(record["status"])


def _requeue_through_submitit() -> None:
    """Hand a preempted run (its checkpoint saved) to submitit's USR2 handler, which dumps
    this task (`checkpoint()`), requeues the job and exits. Outside submitit: just return."""
    handler = signal.getsignal(signal.SIGUSR2)
    if isinstance(getattr(handler, "__self__", None), SignalHandler):
        handler(signal.SIGUSR2, None)


class _DropSacctNoise(logging.Filter):
    """Without Slurm accounting, submitit's state polling warns 'Bypassing sacct error' on
    every poll while still collecting results; only that warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return SACCT_NOISE not in record.getMessage()


def quiet_sacct_warnings() -> None:
    logger = logging.getLogger("submitit")
    if not any(isinstance(f, _DropSacctNoise) for f in logger.filters):
        logger.addFilter(_DropSacctNoise())


# --- Slurm ------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Submitted:
    """A grid cell handed to a launcher: its key and the launcher's job id."""

    key: str
    job_id: str


def timeout_minutes(cfg: Mapping[str, object], launcher: Mapping[str, object]) -> int:
    """The time limit of a job: its budget x the ruleset multiplier x the margin, plus setup."""
    budget = cfg.get("max_runtime_sec") or float(cfg["workload"]["max_runtime_sec"]) * float(cfg["ruleset"].get("budget_multiplier", 1.0))
    return math.ceil(float(budget) * float(launcher["timeout_margin"]) / 60) + int(launcher["setup_min"])


def submit_slurm(jobs: Sequence[tuple[str, JobConfig]], launcher: Mapping[str, object], folder: Path, job_name: str, dry: bool) -> list[Submitted]:
    """One job array per resource class (here: time limit); returns the array task ids."""
    quiet_sacct_warnings()
    classes: dict[int, list[tuple[str, JobConfig]]] = {}
    for key, cfg in jobs:
        classes.setdefault(timeout_minutes(cfg, launcher), []).append((key, cfg))
    submitted = []
    for timeout_min, members in sorted(classes.items()):
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(name=job_name, timeout_min=timeout_min, **_slurm_parameters(launcher))
        captured = io.StringIO()  # submitit prints sbatch's stderr; a refusal must reach the user as one line
        try:
            with contextlib.redirect_stderr(captured):
                handles = executor.map_array(SweepTask(dry), [cfg for _, cfg in members])
        except Exception as e:  # noqa: BLE001 - submitit wraps sbatch's failure in several types
            raise PacerUserError(f"sbatch refused the job array: {_sbatch_error(e)}") from None
        sys.stderr.write(captured.getvalue())
        submitted += [Submitted(key, str(h.job_id)) for (key, _), h in zip(members, handles, strict=True)]
    return submitted


def _slurm_parameters(launcher: Mapping[str, object]) -> dict[str, object]:
    optional = {"slurm_partition": "partition", "slurm_account": "account", "slurm_qos": "qos", "slurm_constraint": "constraint"}
    params: dict[str, object] = {name: launcher[key] for name, key in optional.items() if launcher.get(key)}
    params |= {
        "gpus_per_node": int(launcher["gpus_per_node"]),
        "cpus_per_task": int(launcher["cpus_per_task"]),
        "mem_gb": float(launcher["mem_gb"]),
        "slurm_array_parallelism": int(launcher["array_parallelism"]),
    }
    if launcher.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(launcher["additional_parameters"])
    return params


def _sbatch_error(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower() and "sbatch" in line.lower()), lines[-1] if lines else type(error).__name__)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# --- local and inline ----------------------------------------------------------------


def run_local(jobs: Sequence[tuple[str, JobConfig]], launcher: Mapping[str, object], folder: Path, dry: bool) -> list[Submitted]:
    """Run the jobs as local background processes, `workers` at a time, until all end.

    submitit's LocalExecutor starts every job it is given at once, so the pool is kept here."""
    executor = submitit.LocalExecutor(folder=folder)
    workers = max(int(launcher["workers"]), 1)
    submitted: list[Submitted] = []
    running: list[submitit.Job] = []
    for key, cfg in jobs:
        running = _wait_for_slot(running, workers)
        executor.update_parameters(timeout_min=timeout_minutes(cfg, launcher))
        handle = executor.submit(SweepTask(dry), cfg)
        running.append(handle)
        submitted.append(Submitted(key, str(handle.job_id)))
    for handle in running:
        handle.wait()
    return submitted


def _wait_for_slot(handles: list[submitit.Job], workers: int) -> list[submitit.Job]:
    while True:
        handles = [h for h in handles if not h.done()]
        if len(handles) < workers:
            return handles
        time.sleep(0.2)


def run_inline(jobs: Sequence[tuple[str, JobConfig]], dry: bool) -> list[Submitted]:
    """Run the jobs one after another here; stop early when a signal preempted one."""
    from harness.job import run_job

    submitted = []
    for key, cfg in jobs:
        submitted.append(Submitted(key, "inline"))
        if not dry and run_job(cfg)["status"] == "preempted":
            break
    return submitted
