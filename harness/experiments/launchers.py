"""Where a sweep's jobs run: in this process, as local background processes, or on Slurm.

All three run `run_cell` through `SweepTask`, a submitit `Checkpointable`: on SIGUSR2/SIGTERM
the run saves a checkpoint at its next step boundary (`harness.core.checkpoint`); on Slurm the task
then hands over to submitit's own handler, which requeues the job (same Slurm job id) to
continue from that checkpoint. Local jobs are forked processes (`run_local`);
a stopped one is continued by the next `pacer sweep`.

A cell with `devices=N > 1` trains on N processes: the task runs `torchrun` (one per node of
its allocation) with `python -m harness.experiments.launchers <config.json>` as each process, forwards
stop signals to them, and reads the record that rank 0 wrote. On Slurm, one job array per
resource class (time limit, nodes, devices per node) asks for the devices of its cells.
Asking Slurm whether it answers and what its queue holds is `harness.experiments.slurm`'s."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import multiprocessing
import multiprocessing.process
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.job_environment import SignalHandler

from harness.core import checkpoint, distributed
from harness.core.checks import finite_number, whole_number
from harness.core.errors import PacerUserError
from harness.experiments.job import prepare_job, run_job
from harness.experiments.run_config import RunConfig

SACCT_NOISE = "Bypassing sacct error"
RDZV_PORT = 29500  # torchrun's rendezvous on the first node of a multi-node allocation

JobConfig = dict[str, object]
WHOLE_NUMBER_SETTINGS = {"max_attempts": 1, "workers": 1, "gpus_per_node": 1, "cpus_per_task": 1, "array_parallelism": 1}
"""Launcher settings that are counts, with their least value."""
NUMBER_SETTINGS = {"timeout_margin": (1.0, False), "mem_gb": (0.0, True), "setup_min": (0.0, False)}
"""Launcher settings that are numbers: (least value, whether it is excluded). A time limit
below the budget (`timeout_margin` < 1) would stop every run before its budget."""


def check_launcher_settings(launcher: Mapping[str, object]) -> None:
    """Raise PacerUserError naming the first `launcher.KEY` that is not a number in its range."""
    try:
        for key, minimum in WHOLE_NUMBER_SETTINGS.items():
            if key in launcher:
                whole_number(f"launcher.{key}", launcher[key], minimum)
        for key, (least, exclusive) in NUMBER_SETTINGS.items():
            if key in launcher:
                finite_number(f"launcher.{key}", launcher[key], least, exclusive=exclusive)
    except ValueError as e:
        raise PacerUserError(str(e)) from None


class SweepTask(submitit.helpers.Checkpointable):
    """One grid cell as a submitit job: `run_job` with resume, requeued when preempted."""

    def __init__(self, dry: bool = False):
        self.dry = dry
        """Return at once without training (to time or test submission itself)."""

    def __call__(self, cfg: JobConfig) -> str:
        if self.dry:
            return "dry"
        record = run_cell(cfg)
        if record["status"] == "preempted":
            requeue_through_submitit()
        return str(record["status"])


def run_cell(cfg: JobConfig) -> dict[str, object]:
    """Run one grid cell here to its end or a stop signal and return its run record: in this
    process, or for `devices=N > 1` on N processes through torchrun."""
    devices = int(cfg.get("devices") or 1)
    if devices == 1 or distributed.launched():
        return run_job(cfg)
    return _run_under_torchrun(cfg, devices)


def _run_under_torchrun(cfg: JobConfig, devices: int) -> dict[str, object]:
    """One torchrun on this node (of `SLURM_JOB_NUM_NODES`), its processes running the cell;
    the record is the one rank 0 wrote."""
    job = prepare_job(cfg, create_run_dir=False)  # bad input fails here, before any process starts
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
    endpoint = f"{submitit.JobEnvironment().hostnames[0]}:{RDZV_PORT}" if nodes > 1 else None
    with tempfile.TemporaryDirectory(prefix="pacer-cell-") as tmp:
        cfg_file = Path(tmp) / "config.json"
        cfg_file.write_text(json.dumps(cfg), encoding="utf-8")
        command = distributed.torchrun_command(devices // nodes, [str(cfg_file)], nodes=nodes, rdzv_endpoint=endpoint, module="harness.experiments.launchers")
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(len(os.sched_getaffinity(0)) * nodes // devices, 1))
        returncode = _run_forwarding_stop_signals(command, dict(os.environ, OMP_NUM_THREADS=threads))
    record = job.run_dir.read_run()
    if record is None or (returncode != 0 and record.get("status") == "running"):
        raise RuntimeError(f"the run on {devices} processes ended without a final record (torchrun exit code {returncode}; its output is above)")
    return record


def _run_forwarding_stop_signals(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run torchrun to its end. A stop signal (SIGUSR2/SIGTERM) to this process is passed on
    as SIGUSR2 to every process below it, again each second until they end (one may still be
    starting); torchrun's agent ignores SIGUSR2 (Slurm signals every process of a job), so
    it waits for the training processes to checkpoint and end."""
    stop = checkpoint.StopFlag()
    with stop.installed():
        agent = subprocess.Popen(command, env=env, preexec_fn=_ignore_sigusr2)  # noqa: PLW1509 - only sets a signal disposition
        while True:
            try:
                return agent.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if stop.signum is not None:
                    _signal_descendants(os.getpid(), signal.SIGUSR2)


def _ignore_sigusr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _signal_descendants(root: int, signum: int) -> None:
    """Send `signum` to every process below `root` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _torchrun_process(cfg_file: str) -> int:
    """One of the processes of a multi-device cell (`python -m harness.experiments.launchers CONFIG`): the
    run, joined to the others by `run_job`; exits 0 whenever the run ended with a record."""
    try:
        run_job(json.loads(Path(cfg_file).read_text(encoding="utf-8")))
    except BaseException:
        distributed.teardown(wait_for_peers=False)
        raise
    distributed.teardown()
    return 0


def requeue_through_submitit() -> None:
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


@dataclass(frozen=True)
class Submitted:
    """A grid cell handed to a launcher: its key and the launcher's job id."""

    key: str
    job_id: str


def timeout_minutes(cfg: Mapping[str, object], launcher: Mapping[str, object]) -> int:
    """The time limit of a job: its budget (`RunConfig.budget`) x the margin, plus setup."""
    return math.ceil(RunConfig.from_mapping(cfg).budget * float(launcher["timeout_margin"]) / 60) + int(launcher["setup_min"])


@dataclass(frozen=True, order=True)
class ResourceClass:
    """What each job of one Slurm job array asks for."""

    timeout_min: int
    nodes: int
    devices_per_node: int
    gpu: bool


def resource_class(cfg: Mapping[str, object], launcher: Mapping[str, object]) -> ResourceClass:
    """A cell's resources: its time limit, and its `devices` as GPUs over as few nodes of
    `launcher.gpus_per_node` GPUs as hold them (device=cuda) or as processes on one node (cpu)."""
    devices = int(cfg.get("devices") or 1)
    gpu = cfg.get("device") == "cuda"
    per_node = int(launcher["gpus_per_node"]) if gpu else devices
    if per_node < 1:
        raise PacerUserError(f"launcher.gpus_per_node={per_node} must be >= 1 for device=cuda jobs")
    if devices > per_node and devices % per_node:
        raise PacerUserError(f"devices={devices} does not fill whole nodes of launcher.gpus_per_node={per_node} GPUs")
    return ResourceClass(timeout_minutes(cfg, launcher), math.ceil(devices / per_node), min(devices, per_node), gpu)


def submit_slurm(jobs: Sequence[tuple[str, JobConfig]], launcher: Mapping[str, object], folder: Path, job_name: str, dry: bool) -> list[Submitted]:
    """One job array per resource class; returns the array task ids."""
    quiet_sacct_warnings()
    classes: dict[ResourceClass, list[tuple[str, JobConfig]]] = {}
    for key, cfg in jobs:
        classes.setdefault(resource_class(cfg, launcher), []).append((key, cfg))
    submitted = []
    for resources, members in sorted(classes.items()):
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(name=job_name, **_slurm_parameters(launcher, resources))
        captured = io.StringIO()  # submitit prints sbatch's stderr; a refusal must reach the user as one line
        try:
            with contextlib.redirect_stderr(captured):
                handles = executor.map_array(SweepTask(dry), [cfg for _, cfg in members])
        except Exception as e:  # noqa: BLE001 - submitit wraps sbatch's failure in several types
            raise PacerUserError(f"sbatch refused the job array: {_sbatch_error(e)}") from None
        sys.stderr.write(captured.getvalue())
        submitted += [Submitted(key, str(h.job_id)) for (key, _), h in zip(members, handles, strict=True)]
    return submitted


def _slurm_parameters(launcher: Mapping[str, object], resources: ResourceClass) -> dict[str, object]:
    """submitit's parameters of one class: one task (one torchrun) per node, with the GPUs,
    CPU cores and memory of that node's devices (`cpus_per_task`, `mem_gb` are per device)."""
    optional = {"slurm_partition": "partition", "slurm_account": "account", "slurm_qos": "qos", "slurm_constraint": "constraint"}
    params: dict[str, object] = {name: launcher[key] for name, key in optional.items() if launcher.get(key)}
    per_node = resources.devices_per_node
    params |= {
        "timeout_min": resources.timeout_min,
        "nodes": resources.nodes,
        "tasks_per_node": 1,
        "gpus_per_node": per_node if resources.gpu else 0,
        "cpus_per_task": int(launcher["cpus_per_task"]) * per_node,
        "mem_gb": float(launcher["mem_gb"]) * per_node,
        "slurm_array_parallelism": int(launcher["array_parallelism"]),
    }
    if launcher.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(launcher["additional_parameters"])
    return params


def _sbatch_error(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower() and "sbatch" in line.lower()), lines[-1] if lines else type(error).__name__)


# --- local and inline ----------------------------------------------------------------


def run_local(jobs: Sequence[tuple[str, JobConfig]], launcher: Mapping[str, object], folder: Path, dry: bool) -> list[Submitted]:
    """Run the jobs as local processes, `workers` at a time, until all end.

    Each job is a process forked from a server process that imported torch and the runner
    once (multiprocessing's `forkserver`, which never runs a torch operation, so no thread pool
    is forked): a fresh interpreter per job spent about 5 s of CPU on those imports, a third of
    a short CPU-suite run. A job still runs alone (a crash or a kill ends only it); its output goes to
    FOLDER/<pid>_0_log.out and .err (submitit's names, which `pacer status` points to). Past
    its time limit (`timeout_minutes`) it gets SIGTERM, on which the run checkpoints and stops
    (`preempted`, continued by the next `pacer sweep`), and SIGKILL a minute later."""
    folder.mkdir(parents=True, exist_ok=True)
    workers = max(int(launcher["workers"]), 1)
    submitted: list[Submitted] = []
    running: list[LocalJob] = []
    for key, cfg in jobs:
        running = _wait_for_slot(running, workers)
        job = LocalJob.start(cfg, folder, timeout_minutes(cfg, launcher) * 60.0, dry)
        running.append(job)
        submitted.append(Submitted(key, str(job.pid)))
    _wait_for_slot(running, 1)  # returns once none is left running
    return submitted


KILL_GRACE_SEC = 60.0
"""Between a local job's SIGTERM at its time limit and its SIGKILL."""


@dataclass
class LocalJob:
    """One job of `run_local`: a forked process with a deadline."""

    process: multiprocessing.process.BaseProcess
    deadline: float
    """`time.monotonic()` past which the job is stopped."""
    terminated: bool = False

    @property
    def pid(self) -> int:
        assert self.process.pid is not None  # set by start()
        return self.process.pid

    @classmethod
    def start(cls, cfg: JobConfig, folder: Path, limit_sec: float, dry: bool) -> LocalJob:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["harness.experiments.job"])  # read when the server starts: once per sweep
        process = context.Process(target=_local_job, args=(cfg, folder, dry), daemon=False)
        process.start()
        return cls(process, time.monotonic() + limit_sec)

    def done(self) -> bool:
        """True once the process has ended; stops it past its deadline."""
        if not self.process.is_alive():
            self.process.join()
            return True
        late = time.monotonic() - self.deadline
        if late > KILL_GRACE_SEC:
            self.process.kill()
        elif late > 0 and not self.terminated:
            self.process.terminate()
            self.terminated = True
        return False


def _local_job(cfg: JobConfig, folder: Path, dry: bool) -> None:
    """A local job's body: its output (file descriptors 1 and 2, and Python's streams) to its
    log files, then the task."""
    for fd, suffix in ((1, "out"), (2, "err")):
        log = os.open(folder / f"{os.getpid()}_0_log.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, fd)
        os.close(log)
    sys.stdout, sys.stderr = open(1, "w", buffering=1, closefd=False), open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own streams
    print(f"job {os.getpid()}: {SweepTask(dry)(cfg)}")


def _wait_for_slot(handles: list[LocalJob], workers: int) -> list[LocalJob]:
    while True:
        handles = [h for h in handles if not h.done()]
        if len(handles) < workers:
            return handles
        time.sleep(0.2)


def run_inline(jobs: Sequence[tuple[str, JobConfig]], dry: bool) -> list[Submitted]:
    """Run the jobs one after another here; stop early when a signal preempted one."""
    submitted = []
    for key, cfg in jobs:
        submitted.append(Submitted(key, "inline"))
        if not dry and run_cell(cfg)["status"] == "preempted":
            break
    return submitted


if __name__ == "__main__":
    sys.exit(_torchrun_process(sys.argv[1]))
