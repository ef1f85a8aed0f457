"""`pacer sweep`: a grid of runs and its manifest.

The grid is submission x workload x study x trial. Each cell is one `run_job` config with its
run seed derived from (experiment seed, workload, study, trial) and, under the external
ruleset, trial k of study j's point of the submission's search space (`harness.plugins.search`), so
a cell is the same wherever and whenever it runs.

`<root>/<experiment>/sweep.json` (the manifest, replaced atomically) lists every cell with its
config hash, launcher job id, attempts and last known state. Re-running the same sweep
launches only cells that are missing or failed (failed ones until `max_attempts`), never one
that finished or is queued or running, and refuses when a cell's config changed, since its
runs would no longer be comparable. A record counts as a cell's only when its config hashes
to the cell's (`written_by`): a record at a cell's path that the cell's job did not write (a
hand run, a copy, an older sweep) is refused, never adopted, and the sweep's own records are
recognized without the manifest. A lock file stops two sweeps of one experiment at once.

Reading the manifest and where each cell stands is `harness.experiments.manifest`'s, which `pacer status`
(`harness.experiments.sweep_status`) uses without importing torch; this module writes the manifest.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.core import rng as rnglib
from harness.core.errors import PacerUserError
from harness.core.store import RunDir, atomic_write, config_hash
from harness.experiments import launchers, slurm
from harness.experiments.job import changed_keys, prepare_job, resolve_hyperparameters
from harness.experiments.manifest import FOREIGN_RECORD, LOCK, MANIFEST, CellState, experiment_dir, read_manifest, refresh
from harness.experiments.run_config import RunConfig, check_no_hand_tuning, compose, split_workload_id
from harness.plugins.hparams import SearchSpace
from harness.plugins.search import study_points
from harness.plugins.submissions import LoadedSubmission, load_submission
from harness.plugins.workloads import resolve_variant


@dataclass
class Cell:
    """One grid cell: a run's config and what the manifest knows about it."""

    key: str
    cfg: dict[str, object]
    hash: str
    run_dir: str
    """The run folder, relative to the results root (as the manifest keeps it)."""
    entry: dict[str, object] = field(default_factory=dict)


# --- the grid ----------------------------------------------------------------------------


def expand_grid(base_overrides: Sequence[str], submissions: Sequence[str], workloads: Sequence[str]) -> list[Cell]:
    """Every cell of the grid: submission x workload x study x trial."""
    cells = []
    _check_override_ids(compose(list(base_overrides)))
    for submission in submissions:
        for workload_id in workloads:
            base, variant = split_workload_id(workload_id)
            composed = compose([*base_overrides, f"submission={submission}", f"workload={base}", f"variant={variant or 'null'}"])
            plain = OmegaConf.to_container(_with_workload_overrides(composed, workload_id), resolve=True)
            group = _cells_of(plain)
            _check_group(group)
            cells += group
    return cells


def _check_group(group: Sequence[Cell]) -> None:
    """Check the input of a (submission, workload) group's runs before any cell of the grid is
    launched, through its first cell (the others differ only in study, trial, seed and the
    search space's own points): a bad setting must not surface after the good cells trained.
    The check builds the workload on the CPU: a sweep is often launched from a node without
    the GPUs its cells will run on."""
    if group:
        try:
            prepare_job(group[0].cfg | {"device": "cpu", "devices": 1}, create_run_dir=False)
        except PacerUserError as e:
            raise PacerUserError(f"cell {group[0].key}: {e}") from None


PER_WORKLOAD_KEYS = ("workload", "submission", "device", "devices", "threads", "max_steps", "eval_every_steps", "max_runtime_sec", "checkpoint_every_sec", "hparams")
"""What `suite.overrides.<workload id>` may set: where and how a cell trains, never where its
record goes (results_root, experiment) or which cell it is (study, trial, seed)."""


def _check_override_ids(composed: DictConfig) -> None:
    """Refuse `suite.overrides` for a name that is no workload id (a typo would be ignored)."""
    for workload_id in composed.suite.get("overrides") or {}:
        try:
            split_workload_id(str(workload_id))
        except PacerUserError as e:
            raise PacerUserError(f"suite.overrides.{workload_id}: {e}") from None


def _with_workload_overrides(composed: DictConfig, workload_id: str) -> DictConfig:
    """The config with the suite's overrides for this workload (`suite.overrides.<id>`, e.g.
    `{devices: 8}` for a workload that trains on 8 GPUs) merged in; unknown keys are refused."""
    overrides = (composed.suite.get("overrides") or {}).get(workload_id)
    if not overrides:
        return composed
    if fixed := sorted(set(overrides) - set(PER_WORKLOAD_KEYS)):
        raise PacerUserError(f"suite.overrides.{workload_id}.{fixed[0]}: a sweep's cells share it; per workload only {', '.join(PER_WORKLOAD_KEYS)} may change")
    try:
        return OmegaConf.merge(composed, overrides)
    except OmegaConfBaseException as e:
        raise PacerUserError(f"suite.overrides.{workload_id}: {str(e).strip().splitlines()[0]}") from None


def _cells_of(plain: dict[str, object]) -> list[Cell]:
    ruleset = plain["ruleset"]
    submission = load_submission(plain["submission"])
    workload = resolve_variant(plain["workload"], plain.get("variant"))["name"]
    job_base = {k: v for k, v in plain.items() if k not in ("suite", "launcher")} | {"resume": True, "overwrite": False, "quiet": True, "experiment_seed": plain["seed"]}
    check_no_hand_tuning(str(ruleset["name"]), dict(plain.get("hparams") or {}))
    points = _listed_points(ruleset, submission.search_space)
    num_trials = len(points) if points else _grid_size(ruleset, "num_trials")
    cells = []
    for study in range(_grid_size(ruleset, "num_studies")):
        study_hparams = _study_hparams(ruleset, points, submission.search_space, int(plain["seed"]), study, num_trials, dict(plain.get("hparams") or {}))
        for trial in range(num_trials):
            seed = rnglib.from_strings(plain["seed"], workload, study, trial)
            cfg = job_base | {"study": study, "trial": trial, "seed": seed, "hparams": study_hparams[trial]}
            key = f"{submission.name}/{workload}/study_{study}/trial_{trial}"
            run_dir = _checked_cell(key, cfg, submission).run_dir.relative_to(cfg["results_root"])
            cells.append(Cell(key, cfg, config_hash(cfg), str(run_dir)))
    return cells


def _checked_cell(key: str, cfg: Mapping[str, object], submission: LoadedSubmission) -> RunConfig:
    """Every cell's configuration and hyperparameters, checked before any lock, record or job:
    a bad value, name or point fails once here, naming the cell, not in every job."""
    try:
        config = RunConfig.from_mapping(cfg)
        resolve_hyperparameters(submission, config.trial, config.hparams)
    except PacerUserError as e:
        raise PacerUserError(f"cell {key}: {e}") from None
    return config


def _listed_points(ruleset: Mapping[str, object], space: SearchSpace) -> list[dict[str, object]] | None:
    """The trials' concrete points, in order: the ruleset's `points`, else (external) the points of
    a list-form search space, each study running all of them as AlgoPerf does; None: sample."""
    if ruleset.get("points"):
        return [dict(p) for p in ruleset["points"]]
    if ruleset.get("pass_hyperparameters") and space.points is not None:
        return [dict(p) for p in space.points]
    return None


def _grid_size(ruleset: Mapping[str, object], key: str) -> int:
    """`ruleset.num_trials` or `ruleset.num_studies`: a whole number >= 1 (0 would sweep nothing)."""
    value = ruleset[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PacerUserError(f"ruleset.{key}={value!r} must be an integer >= 1")
    return value


def _study_hparams(ruleset: Mapping[str, object], listed: list[dict[str, object]] | None, space: SearchSpace, seed: int, study: int, num_trials: int,
                   fixed: dict[str, object]) -> list[dict[str, object]]:
    """Each trial's hyperparameter overrides: listed points, quasi-random points of the
    search space (external), or none so the submission's default point runs (self)."""
    if listed:
        points = listed
    elif ruleset.get("pass_hyperparameters"):
        points = study_points(space, num_trials, seed, study)
    else:
        points = [{} for _ in range(num_trials)]
    return [p | fixed for p in points]


# --- writing the manifest, and the lock --------------------------------------------------


def write_manifest(exp_dir: Path, manifest: dict[str, object]) -> None:
    manifest["updated_at"] = _now()
    try:
        atomic_write(exp_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    except OSError as e:
        raise PacerUserError(f"cannot write the results root {exp_dir.parent}: {e.strerror} ({exp_dir / MANIFEST})") from None


@contextmanager
def experiment_lock(exp_dir: Path) -> Iterator[None]:
    """Hold `<experiment>/.sweep.lock` (flock) for the duration; refuse if another holds it."""
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        f = open(exp_dir / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    except OSError as e:
        raise PacerUserError(f"cannot write the results root {exp_dir.parent}: {e.strerror} ({exp_dir})") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise PacerUserError(f"another pacer sweep of experiment {exp_dir.name} is running ({f.read().strip() or 'pid unknown'}; lock {exp_dir / LOCK})") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# --- the verb ----------------------------------------------------------------------------


def sweep(overrides: Sequence[str], submissions: Sequence[str], workloads: Sequence[str] | None, dry: bool) -> int:
    """`pacer sweep`: launch the grid `submissions` x `workloads` (None: the suite's) x study x
    trial of the config that the normalized `overrides` compose, and record it in the
    experiment's manifest; with `dry`, jobs that exit at once. Returns 0.

    Raises PacerUserError (one line), before anything is locked, written or launched, for a bad
    setting or cell, a changed cell config, a foreign record, or a sweep of the experiment
    already running."""
    settings = OmegaConf.to_container(compose(list(overrides)), resolve=True)
    workloads = workloads or list(settings["suite"]["workloads"])
    for key in ("resume", "overwrite"):
        if settings[key] is not False:
            raise PacerUserError(f"{key}={settings[key]!r}: pacer sweep continues unfinished cells by itself and never overwrites a record; {key} is pacer run's")
    launcher = settings["launcher"]
    launchers.check_launcher_settings(launcher)
    if launcher["name"] == "slurm":
        slurm.check_slurm()
    exp_dir = experiment_dir(settings["results_root"], str(settings["experiment"]))
    cells = expand_grid(overrides, submissions, workloads)
    with experiment_lock(exp_dir):
        manifest = read_manifest(exp_dir)
        manifest.setdefault("job_name", f"pacer-{settings['experiment']}")
        _check_comparable(manifest, cells, str(settings["experiment"]))
        _add_cells(manifest, cells)
        refresh(manifest, Path(settings["results_root"]), exp_dir)
        _refuse_foreign_records(cells, Path(settings["results_root"]))
        todo = _cells_to_launch(manifest, cells, int(launcher["max_attempts"]))
        write_manifest(exp_dir, manifest)
        print(f"experiment {settings['experiment']}: {len(cells)} cells, launching {len(todo)} on {launcher['name']}")
        submitted = _launch(todo, launcher, exp_dir, manifest["job_name"], dry)
        _record_submission(manifest, submitted, launcher["name"], exp_dir)
        write_manifest(exp_dir, manifest)
    _print_submitted(submitted, launcher["name"], str(settings["experiment"]), str(settings["results_root"]))
    return 0


def _check_comparable(manifest: Mapping[str, object], cells: Sequence[Cell], experiment: str) -> None:
    """Refuse cells that the experiment holds with another config, and cells of another ruleset
    than the experiment's (one experiment, one ruleset: scoring never mixes them)."""
    held = {str(name) for config in manifest.get("configs", {}).values() if (name := (config.get("ruleset") or {}).get("name"))}
    for cell in cells:
        ruleset = str(cell.cfg["ruleset"]["name"])
        if held and ruleset not in held:
            raise PacerUserError(f"experiment {experiment} holds {', '.join(sorted(held))} runs and {cell.key} is a {ruleset} cell: "
                                 "one experiment holds one ruleset; use a new experiment name")
    for cell in cells:
        old = manifest["jobs"].get(cell.key)
        if old is not None and old["hash"] != cell.hash:
            changed = changed_keys(manifest["configs"].get(cell.key.rsplit("/", 2)[0], {}), cell.cfg)
            raise PacerUserError(
                f"experiment {experiment} already holds {cell.key} with a different config ({changed}); "
                "its runs would not be comparable: use a new experiment name")


def _add_cells(manifest: dict[str, object], cells: Sequence[Cell]) -> None:
    configs = manifest.setdefault("configs", {})
    for cell in cells:
        group = cell.key.rsplit("/", 2)[0]
        configs.setdefault(group, {k: v for k, v in cell.cfg.items() if k not in ("study", "trial", "seed", "hparams")})
        entry = manifest["jobs"].setdefault(cell.key, {"hash": cell.hash, "run_dir": cell.run_dir, "attempts": 0, "state": CellState.PENDING.value})
        cell.entry = entry


def _refuse_foreign_records(cells: Sequence[Cell], results_root: Path) -> None:
    """Refuse when a run record that this cell's job did not write sits at its path (a hand
    run, a copy, an older sweep whose manifest was lost; `refresh` found them): counted as the
    cell's result, it would be scored with another point, seed or config than the cell's."""
    for cell in cells:
        if cell.entry.get("reason") == FOREIGN_RECORD:
            record = RunDir(results_root / str(cell.entry["run_dir"])).read_run() or {}
            theirs = {k: v for k, v in (record.get("config") or {}).items() if k not in ("study", "trial")}
            if cell.cfg.get("hparams"):  # the cell names its whole point: compare the point the record trained
                theirs["hparams"] = record.get("hyperparameters") or {}
            raise PacerUserError(f"{results_root / str(cell.entry['run_dir'])}: a run record this sweep did not write sits where cell {cell.key} goes "
                                 f"(record -> cell: {changed_keys(theirs, cell.cfg, hparams=True)}): move it aside, or sweep into another experiment")


def _cells_to_launch(manifest: Mapping[str, object], cells: Sequence[Cell], max_attempts: int) -> list[Cell]:
    todo = []
    for cell in cells:
        entry = cell.entry
        state = CellState(entry["state"])
        if state is CellState.PENDING:
            todo.append(cell)
        elif state in (CellState.LOST, CellState.FAILED) and int(entry["attempts"]) < max_attempts:
            if state is CellState.FAILED:  # an error starts over; a lost run resumes from its checkpoint
                cell.cfg = cell.cfg | {"resume": False, "overwrite": True}
            todo.append(cell)
    return todo


def launch_order(cells: Sequence[Cell]) -> list[Cell]:
    """`cells` (in grid order: submission x workload x study x trial) in the order they start:
    study by study, trial by trial, workload by workload, every submission's cell beside the
    others'. A stretch of load on a shared machine (another user's job, a laptop's browser) then
    falls on all submissions alike, instead of on whichever submission's cells ran during it."""
    grid_position = {cell.key: i for i, cell in enumerate(cells)}
    workload_rank: dict[str, int] = {}
    for cell in cells:
        workload_rank.setdefault(cell.key.split("/")[1], len(workload_rank))
    return sorted(cells, key=lambda c: (int(c.cfg["study"]), int(c.cfg["trial"]), workload_rank[c.key.split("/")[1]], grid_position[c.key]))


def _launch(cells: Sequence[Cell], launcher: Mapping[str, object], exp_dir: Path, job_name: str, dry: bool) -> list[launchers.Submitted]:
    jobs = [(c.key, c.cfg) for c in launch_order(cells)]
    if not jobs:
        return []
    if launcher["name"] == "slurm":
        return launchers.submit_slurm(jobs, launcher, exp_dir / ".submitit", job_name, dry)
    if launcher["name"] == "local":
        return launchers.run_local(jobs, launcher, exp_dir / ".submitit", dry)
    return launchers.run_inline(jobs, dry)


def _record_submission(manifest: dict[str, object], submitted: Sequence[launchers.Submitted], launcher: str, exp_dir: Path) -> None:
    for item in submitted:
        entry = manifest["jobs"][item.key]
        entry |= {"job_id": item.job_id, "launcher": launcher, "attempts": int(entry["attempts"]) + 1, "submitted_at": _now(), "state": CellState.QUEUED.value, "reason": None}
        if launcher != "inline":
            entry["log"] = str(exp_dir / ".submitit" / f"{item.job_id}_0_log.err")


def _print_submitted(submitted: Sequence[launchers.Submitted], launcher: str, experiment: str, results_root: str) -> None:
    status = f"pacer status experiment={experiment} results_root={results_root}"
    if not submitted:
        print(f"nothing to launch: every cell is done, queued, running or out of attempts (see {status})")
        return
    if launcher == "slurm":
        arrays = sorted({s.job_id.split("_")[0] for s in submitted})
        print(f"submitted {len(submitted)} jobs as Slurm job array(s) {', '.join(arrays)}")
        print(f"follow with: {status} [--wait]")
    else:
        print(f"ran {len(submitted)} jobs; where each cell stands: {status}")
