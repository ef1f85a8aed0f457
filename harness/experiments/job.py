"""One benchmark run from a composed config: check everything, train, keep the record.

Everything that can be wrong with the input is checked before any data is built or any
step is taken. `run_job` is what `pacer run` calls and what sweeps will call per grid cell."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from harness.core import checkpoint, contention, distributed
from harness.core.errors import PacerUserError
from harness.core.fingerprint import fingerprint
from harness.core.runner import Runner, RunOutcome, RunSettings
from harness.core.spec import Hyperparameters, Workload
from harness.core.store import TERMINAL_STATUSES, UNHASHED_KEYS, RunDir, RunExistsError
from harness.experiments.progress import Progress
from harness.experiments.run_config import RunConfig
from harness.plugins import hparams as hparamslib
from harness.plugins.submissions import LoadedSubmission, load_submission
from harness.plugins.workloads import build_workload

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Job:
    """Everything a run needs, checked."""

    config: RunConfig
    workload: Workload
    submission: LoadedSubmission
    hyperparameters: Hyperparameters
    settings: RunSettings
    """The runner's settings; `max_runtime_sec` is the run's budget (`RunConfig.budget`)."""
    run_dir: RunDir

    @property
    def cfg(self) -> dict[str, object]:
        """The run's configuration as plain data (the record's `config`)."""
        return self.config.plain

    @property
    def checkpoint_every_sec(self) -> float | None:
        return self.config.checkpoint_every_sec


def prepare_job(cfg: DictConfig | Mapping[str, object], *, create_run_dir: bool = True) -> Job:
    """Check the config and build (cheaply) what the run needs; raise `PacerUserError`.

    Under torchrun this joins the process group first and only rank 0 touches the run folder.
    `create_run_dir=False` checks everything without creating or clearing the folder (what
    `pacer run devices=N` does before it launches torchrun)."""
    config = RunConfig.from_mapping(cfg)
    path = config.run_dir
    device = _check_device(config.device, config.devices)
    distributed.setup(device)
    device = distributed.local_device(device)
    workload = build_workload(config.plain["workload"], config.plain.get("variant"), device)
    if config.devices > 1 and not workload.multi_device:
        raise PacerUserError(f"workload {workload.name} runs on one device only, not devices={config.devices}")
    if config.devices > 1 and workload.clock == "normalized":
        raise PacerUserError(f"workload {workload.name} uses the normalized clock, which times one process: run it with devices=1")
    _set_threads(config.threads, workload)
    settings = RunSettings(seed=config.seed, max_steps=config.max_steps, eval_every_steps=config.eval_every_steps, max_runtime_sec=config.budget,
                           stop_at_target=config.stop_at_target)
    submission = load_submission(config.plain["submission"])
    _check_ruleset_fits(submission, config.ruleset.name)
    submission.impl  # noqa: B018 - an AlgoPerf file is imported here: its failure is bad input, found before any run starts
    hyperparameters = resolve_hyperparameters(submission, config.trial, config.hparams)
    run_dir = RunDir(path)
    if not create_run_dir:
        if run_dir.exists() and not (config.resume or config.overwrite):
            raise PacerUserError(f"run folder {path} already holds a run: pass resume=true or overwrite=true")
    elif distributed.is_main():
        try:
            run_dir.prepare(config.results_root, resume=config.resume, overwrite=config.overwrite)
        except RunExistsError as e:
            raise PacerUserError(str(e)) from None
        except OSError as e:
            raise PacerUserError(f"cannot write the results root {config.results_root}: {e.strerror} ({path})") from None
    distributed.barrier()
    return Job(config, workload, submission, hyperparameters, settings, run_dir)


def resolve_hyperparameters(submission: LoadedSubmission, trial: int, overrides: Mapping[str, object]) -> Hyperparameters:
    """The run's point: the `hparams` overrides over the submission's point for `trial` (its
    default point, or its search space's); raises PacerUserError for a name or value the
    search space does not allow."""
    base = submission.point_for(trial) if set(submission.search_space.params) - set(overrides) else {}
    return hparamslib.resolve(submission.search_space, base, overrides, f"submission {submission.name}")


def run_job(cfg: DictConfig | Mapping[str, object]) -> dict[str, object]:
    """Run one job to its end, or to a preemption signal, and return its run record (also on
    disk as run.json). With `resume=true` a finished run is returned as it is and a preempted
    or killed one continues from its checkpoint (or starts over when it has none); evals
    recorded after the checkpoint are dropped and redone, never counted twice.

    SIGUSR2/SIGTERM from here on stop the run at its next step boundary with a checkpoint."""
    stop = checkpoint.StopFlag()
    with stop.installed():
        return _run_job(cfg, stop)


def _run_job(cfg: DictConfig | Mapping[str, object], stop: checkpoint.StopFlag) -> dict[str, object]:
    job = prepare_job(cfg)
    with _only_process_on(job.run_dir.path) if distributed.is_main() else contextlib.nullcontext():
        return _run_prepared(job, stop)


@contextlib.contextmanager
def _only_process_on(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder itself (flock; released when the process ends,
    however it ends). Raises PacerUserError when another process holds it: two writers would
    interleave their evals in one record."""
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PacerUserError(f"another pacer process is running the run in {run_dir}: wait for it to end, or stop it first") from None
        yield
    finally:
        os.close(fd)


def _run_prepared(job: Job, stop: checkpoint.StopFlag) -> dict[str, object]:
    previous = job.run_dir.read_run()
    if previous is not None and job.config.resume:
        _check_same_run(previous, job)
        if previous["status"] in TERMINAL_STATUSES:
            return previous
    main = distributed.is_main()  # under DDP only rank 0 writes and reports
    saved = checkpoint.load(job.run_dir.path, job.submission.checkpoint_classes) if job.config.resume else None
    record = _initial_record(job)
    if previous is not None and job.config.resume:
        record |= {"started_at": previous["started_at"], "restarts": int(previous.get("restarts", 0)) + 1, "preemptions": saved["preemptions"] if saved else 0}
    if main:
        job.run_dir.write_evals(saved["outcome"]["evals"] if saved else [])  # the checkpoint's own copy: a damaged log cannot drop or alter them
        job.run_dir.write_run(record)
    progress = Progress(job.workload, job.config.budget, f"{job.submission.name} on {job.workload.name}", job.config.quiet or not main)

    def on_eval(row: dict[str, float]) -> None:
        if main:
            job.run_dir.append_eval(row)
            progress.on_eval(row)

    impl = job.submission.impl
    periodic = checkpoint.PeriodicCheckpoints(job.run_dir.path, job.config.checkpoint_every_sec, record["preemptions"])
    runner = Runner(job.workload, impl, job.hyperparameters, job.settings, on_eval, should_stop=stop, resume_from=saved, at_step_boundary=periodic,
                    on_warning=progress.warn if main else lambda text: None)
    sched_start = contention.snapshot()
    outcome = runner.run()
    progress.close()
    probes = runner.clock.probe_summary()
    record = _final_record(record, outcome) | {
        "batch_size": runner.batch_size,
        "warnings": runner.warnings,
        "clock": record["clock"] | {"probes": probes},
        "contention": contention.assess(sched_start, contention.snapshot(), probes),
    }
    if main:
        if outcome.status == "preempted":
            record["preemptions"] += 1
            checkpoint.save(runner, job.run_dir.path, record["preemptions"])
            del record["finished_at"]
        else:
            checkpoint.remove(job.run_dir.path)
        job.run_dir.write_run(record)
    return record


def changed_keys(old: Mapping[str, object], new: Mapping[str, object], *, hparams: bool = False) -> str:
    """The first keys that differ, as `key old -> new` (`hparams`: the seed and hyperparameters too)."""
    skipped = ("study", "trial") if hparams else ("study", "trial", "seed", "hparams")
    flat_old, flat_new = _flatten({k: v for k, v in old.items() if k not in skipped}), _flatten({k: v for k, v in new.items() if k not in skipped})
    changed = sorted((k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k) != flat_new.get(k) and k.split(".")[0] not in UNHASHED_KEYS),
                     key=lambda k: (k != "seed", not k.startswith("hparams."), k))
    if not changed:
        return "changed hyperparameters or seeds"
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return "changed: " + ", ".join(f"{k} {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in changed[:4]) + more


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, Mapping):
        return {k: v for key, sub in value.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _check_same_run(previous: Mapping[str, object], job: Job) -> None:
    """`resume=true` continues the run in the folder only with the settings it was started with:
    another seed, hyperparameter or size would be recorded as this run's while the checkpoint
    (and the evals before it) came from the other. Raises PacerUserError naming what differs."""
    old = previous.get("config")
    if not isinstance(old, Mapping) or not isinstance(previous.get("started_at"), str):
        raise PacerUserError(f"run record {job.run_dir.run_path} is damaged (no config or started_at): move it aside, or pass overwrite=true to start over")
    if any(old.get(k) != job.cfg.get(k) for k in old.keys() | job.cfg.keys() if k not in UNHASHED_KEYS):
        raise PacerUserError(f"resume=true: the run in {job.run_dir.path} was started with other settings ({changed_keys(old, job.cfg, hparams=True)}): "
                             "pass its settings to continue it, or overwrite=true to start over")


def _check_ruleset_fits(submission: LoadedSubmission, ruleset: str) -> None:
    """An AlgoPerf file without a search space is self-tuning: under external tuning it would
    train with no hyperparameters and fail at its first read of one."""
    if submission.self_tuning and ruleset != "self":
        raise PacerUserError(f"submission {submission.name}: {submission.search_space.source} cannot run under the {ruleset} ruleset, which needs a search space: "
                             "put tuning_search_space.json beside the file, or pass ruleset=self for a self-tuning submission")


def _initial_record(job: Job) -> dict[str, object]:
    w = job.workload
    now = _now()
    return {
        "schema": 1,
        "experiment": job.config.experiment,
        "ruleset": job.config.ruleset.name,
        "submission": job.submission.name,
        "workload": w.name,
        "base_workload": w.base_name,
        "variant": w.variant,
        "study": job.config.study,
        "trial": job.config.trial,
        "seed": job.settings.seed,
        "settings": asdict(job.settings),
        "status": "running",
        "hyperparameters": dict(job.hyperparameters),
        "batch_size": None,
        "warnings": [],
        "target": {"metric": w.target_metric_name, "direction": w.target_metric_direction.value, "validation": w.validation_target_value, "test": w.test_target_value},
        "budget": {"max_runtime_sec": job.config.budget, "eval_period_sec": w.eval_period_time_sec, "step_hint": w.step_hint},
        "clock": {"kind": w.clock, "unit": "reference s" if w.clock == "normalized" else "s", "reference_sec": w.reference_step_sec,
                  "eval_every_steps": job.settings.eval_every_steps or w.eval_every_steps, "torch_threads": torch.get_num_threads()},
        "time_to_target": {"validation": None, "test": None},
        "raw_time_to_target": {"validation": None, "test": None},
        "steps_to_target": {"validation": None, "test": None},
        "examples_to_target": {"validation": None, "test": None},
        "preemptions": 0,
        "restarts": 0,
        "config": job.cfg,
        "options": dict(w.run_options),
        "fingerprint": fingerprint(w.device, extra=dict(w.run_options)),
        "started_at": now,
        "updated_at": now,
    }


def _final_record(record: dict[str, object], outcome: RunOutcome) -> dict[str, object]:
    last = outcome.evals[-1] if outcome.evals else {}
    return record | {
        "status": outcome.status,
        "error": outcome.error,
        "time_to_target": outcome.time_to_target,
        "raw_time_to_target": outcome.raw_time_to_target,
        "steps_to_target": outcome.steps_to_target,
        "examples_to_target": outcome.examples_to_target,
        "final": {"global_step": outcome.global_step, "examples_seen": outcome.examples_seen, "num_evals": len(outcome.evals), "last_eval": last},
        "updated_at": _now(),
        "finished_at": _now(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _check_device(device: str, devices: int) -> str:
    if device not in DEVICES:
        raise PacerUserError(f"device={device!r} is not one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise PacerUserError("device=cuda but no CUDA device is visible to torch")
    if device == "cuda" and devices > torch.cuda.device_count():
        raise PacerUserError(f"devices={devices} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def _set_threads(threads: int | None, workload: Workload) -> None:
    """`threads`: torch's CPU threads for this run. Unset: one for a normalized-clock workload
    (two runs share two cores, and the calibration host's reference used one), torch's
    default otherwise."""
    if threads is None and workload.clock == "normalized" and workload.device.type == "cpu":
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
