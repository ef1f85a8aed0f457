"""One benchmark run from a composed config: check everything, train, keep the record.

Everything that can be wrong with the input is checked before any data is built or any
step is taken. `run_job` is what `pacer run` calls and what sweeps will call per grid cell."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from harness.core import checkpoint, contention, distributed
from harness.core.checks import whole_number
from harness.core.errors import PacerUserError
from harness.core.fingerprint import fingerprint
from harness.core.runner import Runner, RunOutcome, RunSettings
from harness.core.spec import Hyperparameters, Workload
from harness.core.store import TERMINAL_STATUSES, UNHASHED_KEYS, RunDir, RunExistsError, check_inside, run_path
from harness.experiments.progress import Progress
from harness.plugins import hparams as hparamslib
from harness.plugins.submissions import LoadedSubmission, load_submission
from harness.plugins.workloads import build_workload, resolve_variant

DEVICES = ("cpu", "cuda")
SWEEP_ONLY_KEYS = ("suite", "launcher")
"""Root-config groups that only `pacer sweep` reads; a run's record leaves them out."""


@dataclass(frozen=True)
class Job:
    """Everything a run needs, checked."""

    cfg: dict[str, object]
    workload: Workload
    submission: LoadedSubmission
    hyperparameters: Hyperparameters
    settings: RunSettings
    run_dir: RunDir
    checkpoint_every_sec: float | None
    """Wall time between periodic checkpoints; None: only on a stop signal."""


def prepare_job(cfg: DictConfig | Mapping[str, object], *, create_run_dir: bool = True) -> Job:
    """Check the config and build (cheaply) what the run needs; raise `PacerUserError`.

    Under torchrun this joins the process group first and only rank 0 touches the run folder.
    `create_run_dir=False` checks everything without creating or clearing the folder (what
    `pacer run devices=N` does before it launches torchrun)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    plain = {k: v for k, v in plain.items() if k not in SWEEP_ONLY_KEYS}
    _check_run_identity(plain)
    path = run_folder(plain)  # a name that leaves the results root: refused before anything is built
    devices = _check_int(plain, "devices", minimum=1, optional=True) or 1
    device = _check_device(str(plain["device"]), devices)
    distributed.setup(device)
    device = distributed.local_device(device)
    workload = build_workload(plain["workload"], plain.get("variant"), device)
    if devices > 1 and not workload.multi_device:
        raise PacerUserError(f"workload {workload.name} runs on one device only, not devices={devices}")
    if devices > 1 and workload.clock == "normalized":
        raise PacerUserError(f"workload {workload.name} uses the normalized clock, which times one process: run it with devices=1")
    _set_threads(plain, workload)
    settings = RunSettings(
        seed=_check_seed(plain),
        max_steps=_check_int(plain, "max_steps", minimum=1, optional=True),
        eval_every_steps=_check_int(plain, "eval_every_steps", minimum=1, optional=True),
        max_runtime_sec=_check_positive(plain, "max_runtime_sec") or _ruleset_budget(plain, workload),
        stop_at_target=bool(plain.get("stop_at_target", True)),  # checked by _check_run_identity
    )
    checkpoint_every_sec = _check_checkpoint_period(plain)
    submission = load_submission(plain["submission"])
    _check_ruleset_fits(submission, ruleset_name(plain))
    submission.impl  # noqa: B018 - an AlgoPerf file is imported here: its failure is bad input, found before any run starts
    overrides = plain.get("hparams") or {}
    if not isinstance(overrides, Mapping):
        raise PacerUserError(f"hparams={overrides!r} must be a mapping of hyperparameters: set one with hparams.NAME=VALUE")
    check_no_hand_tuning(ruleset_name(plain), overrides)
    base = submission.point_for(int(plain["trial"])) if set(submission.search_space.params) - set(overrides) else {}
    hyperparameters = hparamslib.resolve(submission.search_space, base, overrides, f"submission {submission.name}")
    run_dir = RunDir(path)
    if not create_run_dir:
        if run_dir.exists() and not (plain["resume"] or plain["overwrite"]):
            raise PacerUserError(f"run folder {path} already holds a run: pass resume=true or overwrite=true")
    elif distributed.is_main():
        try:
            run_dir.prepare(plain["results_root"], resume=bool(plain["resume"]), overwrite=bool(plain["overwrite"]))
        except RunExistsError as e:
            raise PacerUserError(str(e)) from None
        except OSError as e:
            raise PacerUserError(f"cannot write the results root {plain['results_root']}: {e.strerror} ({path})") from None
    distributed.barrier()
    return Job(plain, workload, submission, hyperparameters, settings, run_dir, checkpoint_every_sec)


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
    if previous is not None and job.cfg["resume"]:
        _check_same_run(previous, job)
        if previous["status"] in TERMINAL_STATUSES:
            return previous
    main = distributed.is_main()  # under DDP only rank 0 writes and reports
    saved = checkpoint.load(job.run_dir.path, job.submission.checkpoint_classes) if job.cfg["resume"] else None
    record = _initial_record(job)
    if previous is not None and job.cfg["resume"]:
        record |= {"started_at": previous["started_at"], "restarts": int(previous.get("restarts", 0)) + 1, "preemptions": saved["preemptions"] if saved else 0}
    if main:
        job.run_dir.write_evals(saved["outcome"]["evals"] if saved else [])  # the checkpoint's own copy: a damaged log cannot drop or alter them
        job.run_dir.write_run(record)
    progress = Progress(job.workload, job.settings.max_runtime_sec or job.workload.max_allowed_runtime_sec, f"{job.submission.name} on {job.workload.name}", bool(job.cfg.get("quiet")) or not main)

    def on_eval(row: dict[str, float]) -> None:
        if main:
            job.run_dir.append_eval(row)
            progress.on_eval(row)

    impl = job.submission.impl
    periodic = checkpoint.PeriodicCheckpoints(job.run_dir.path, job.checkpoint_every_sec, record["preemptions"])
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


def run_folder(cfg: Mapping[str, object]) -> Path:
    """The run folder of a composed config (plain types), worked out without building anything:
    results root / experiment / ruleset / submission / workload (with its variant) / study / trial.

    Raises PacerUserError when a name is not one folder name (`store.safe_component`) or the
    folder resolves, through a symbolic link, outside the results root (`store.check_inside`)."""
    if not str(cfg["results_root"] or "").strip():
        raise PacerUserError("results_root='' names no folder: give one (the default is results)")
    workload = resolve_variant(cfg["workload"], cfg.get("variant"))["name"]
    submission = cfg["submission"]
    path = run_path(cfg["results_root"], str(cfg["experiment"]), ruleset_name(cfg), str(submission["name"]), str(workload), int(cfg["study"]), int(cfg["trial"]))
    check_inside(cfg["results_root"], path)
    return path


def ruleset_name(cfg: Mapping[str, object]) -> str:
    """The ruleset's name (`external`, `self`) from a config's `ruleset` group or string."""
    ruleset = cfg["ruleset"]
    return str(ruleset["name"] if isinstance(ruleset, Mapping) else ruleset)


def check_no_hand_tuning(ruleset: str, overrides: Mapping[str, object]) -> None:
    """Under the self-tuning ruleset a submission runs its own default point: refuse `hparams.*`
    (a hand-set rate would be scored as self-tuned)."""
    if overrides and ruleset == "self":
        raise PacerUserError(f"hparams.{next(iter(overrides))}: under the self-tuning ruleset a submission runs its own default point, not one set per run; "
                             "change the default in its config, or tune it with ruleset=external")


def _check_ruleset_fits(submission: LoadedSubmission, ruleset: str) -> None:
    """An AlgoPerf file without a search space is self-tuning: under external tuning it would
    train with no hyperparameters and fail at its first read of one."""
    if submission.self_tuning and ruleset != "self":
        raise PacerUserError(f"submission {submission.name}: {submission.search_space.source} cannot run under the {ruleset} ruleset, which needs a search space: "
                             "put tuning_search_space.json beside the file, or pass ruleset=self for a self-tuning submission")


def _ruleset_budget(cfg: Mapping[str, object], workload: Workload) -> float | None:
    """The workload's budget times the ruleset's multiplier (self-tuning gets 1.5 x), or None."""
    ruleset = cfg["ruleset"]
    multiplier = ruleset.get("budget_multiplier", 1.0) if isinstance(ruleset, Mapping) else 1.0
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not 0 < multiplier < math.inf:
        raise PacerUserError(f"ruleset.budget_multiplier={multiplier!r} must be a positive finite number")
    return None if multiplier == 1.0 else workload.max_allowed_runtime_sec * multiplier


def _initial_record(job: Job) -> dict[str, object]:
    w = job.workload
    now = _now()
    return {
        "schema": 1,
        "experiment": job.cfg["experiment"],
        "ruleset": ruleset_name(job.cfg),
        "submission": job.submission.name,
        "workload": w.name,
        "base_workload": w.base_name,
        "variant": w.variant,
        "study": int(job.cfg["study"]),
        "trial": int(job.cfg["trial"]),
        "seed": job.settings.seed,
        "settings": asdict(job.settings),
        "status": "running",
        "hyperparameters": dict(job.hyperparameters),
        "batch_size": None,
        "warnings": [],
        "target": {"metric": w.target_metric_name, "direction": w.target_metric_direction.value, "validation": w.validation_target_value, "test": w.test_target_value},
        "budget": {"max_runtime_sec": job.settings.max_runtime_sec or w.max_allowed_runtime_sec, "eval_period_sec": w.eval_period_time_sec, "step_hint": w.step_hint},
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


FLAGS = ("resume", "overwrite", "stop_at_target", "quiet")
"""Keys that take true or false only: `overwrite=no` read by truthiness would delete a run."""


def _check_run_identity(cfg: Mapping[str, object]) -> None:
    """The keys that name the run folder or decide what happens to it: study and trial whole
    numbers >= 0, the flags true/false, never resume and overwrite together."""
    _check_int(cfg, "study", minimum=0)
    _check_int(cfg, "trial", minimum=0)
    for key in FLAGS:
        if key in cfg and not isinstance(cfg[key], bool):
            raise PacerUserError(f"{key}={cfg[key]!r} must be true or false")
    if cfg.get("resume") and cfg.get("overwrite"):
        raise PacerUserError("resume=true and overwrite=true contradict each other: resume continues the run in its folder, overwrite deletes it; pass one")


def _check_int(cfg: Mapping[str, object], key: str, *, minimum: int, optional: bool = False) -> int | None:
    value = cfg.get(key)
    if value is None and optional:
        return None
    try:
        return whole_number(key, value, minimum)
    except ValueError as e:
        raise PacerUserError(str(e)) from None


def _check_seed(cfg: Mapping[str, object]) -> int:
    """`seed`: a whole number that torch's generators take (0 .. 2**63 - 1)."""
    seed = _check_int(cfg, "seed", minimum=0)
    assert seed is not None  # not optional
    if seed >= 2**63:
        raise PacerUserError(f"seed={seed} must be below 2**63 (torch's generators take a signed 64-bit seed)")
    return seed


def _set_threads(cfg: Mapping[str, object], workload: Workload) -> None:
    """`threads`: torch's CPU threads for this run. Unset: one for a normalized-clock workload
    (two runs share two cores, and the calibration host's reference used one), torch's
    default otherwise."""
    threads = _check_int(cfg, "threads", minimum=1, optional=True)
    if threads is None and workload.clock == "normalized" and workload.device.type == "cpu":
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)


def _check_checkpoint_period(cfg: Mapping[str, object]) -> float | None:
    """`checkpoint_every_sec`: seconds between periodic checkpoints; 0 or null turns them off."""
    value = cfg.get("checkpoint_every_sec")
    if value in (None, 0):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == float("inf"):
        raise PacerUserError(f"checkpoint_every_sec={value!r} must be a positive number of seconds, or 0/null for no periodic checkpoints")
    return float(value)


def _check_positive(cfg: Mapping[str, object], key: str) -> float | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise PacerUserError(f"{key}={value!r} must be a positive finite number of seconds")
    return float(value)
