"""`pacer import-algoperf DIR --out OUT`: AlgoPerf logs into Pacer run records.

DIR is one submission's experiment folder
(`study_<k>/<workload>_<framework>/trial_<i>/eval_measurements.csv`, `hparams.json` beside it),
or a folder of such folders, one per submission, named after it. A folder named
`<name>-YYYY-MM-DD-HH-MM-SS` is a rerun of `<name>` (AlgoPerf's runner adds the suffix when the
folder exists). What real trees contain is tolerated, each with a warning naming the file:

* a trial without `eval_measurements.csv`, or with an empty one: a run with no evals (a miss);
* a truncated CSV: rows cut short (missing time or step) are dropped, the rest kept;
* duplicate reruns of one trial: all are imported (each under its own experiment folder name)
  and reported; Pacer's scoring keeps the rerun with the most evals (the later folder on a
  tie), while `--compat algoperf` pools them as AlgoPerf's loader does.

Targets and budgets come from AlgoPerf's tables shipped in `harness/data/`. A run already in OUT
is refused, before anything is written, unless `--overwrite` is given; then only its record
files are replaced (other files in its folder are kept).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from operator import itemgetter
from pathlib import Path
from typing import TypedDict

import numpy as np

from harness.core.errors import PacerUserError
from harness.core.store import RunDir, cache_written_runs, check_inside, check_output_folder, run_path

VERSIONS = ("v0.5", "v0.6", "v1.0")
RULESETS = ("external", "self")
FRAMEWORK_SUFFIX = re.compile(r"_(jax|pytorch)$")
RERUN_SUFFIX = re.compile(r"-\d{4}(-\d{2}){5}$")
NUMBERED = re.compile(r"^(study|trial)_(\d+)$")
EVALS_CSV = "eval_measurements.csv"
IMPORT_LOG = "import_warnings.txt"
"""Beside the imported records: every warning of the import, one a line."""


class WorkloadTargets(TypedDict):
    """One AlgoPerf workload's row in the shipped tables."""

    base_workload: str
    variant: str | None
    metric: str
    direction: str
    validation: float
    test: float | None
    """None where the workload has no test target (finewebedu_lm)."""
    max_runtime_sec: float
    step_hint: int


class TargetTable(TypedDict):
    """harness/data/algoperf_targets_<version>.json."""

    version: str
    source: str
    num_base_workloads: int
    num_studies: int
    num_trials: int
    self_tuning_budget_factor: float
    held_out: list[str]
    held_out_seed: int | None
    workloads: dict[str, WorkloadTargets]


@dataclass(frozen=True)
class Round:
    """What an AlgoPerf round's scoring depends on, from its shipped table."""

    version: str
    base_workloads: tuple[str, ...]
    held_out: tuple[str, ...]
    """The drawn held-out variants (v0.5); empty when the round has none."""
    num_base_workloads: int
    """n in rho = |{w: r <= tau}| / n (8 in v0.5 and v0.6, 9 in v1.0)."""


@dataclass
class ImportSummary:
    runs: int = 0
    submissions: list[str] = field(default_factory=list)
    unknown_workloads: set[str] = field(default_factory=set)
    reruns: list[str] = field(default_factory=list)


@cache
def algoperf_targets(version: str) -> TargetTable:
    """AlgoPerf's workload table for `version`: targets, budgets, step hints, held-out draw."""
    if version not in VERSIONS:
        raise PacerUserError(f"unknown AlgoPerf targets {version!r} (valid: {', '.join(VERSIONS)})")
    text = resources.files("harness").joinpath("data", f"algoperf_targets_{version}.json").read_text(encoding="utf-8")
    table: TargetTable = json.loads(text)
    return table


def algoperf_round(version: str) -> Round:
    """The round `version`'s base workloads, held-out draw and number of base workloads."""
    table = algoperf_targets(version)
    bases = tuple(name for name, spec in table["workloads"].items() if spec["variant"] is None)
    return Round(table["version"], bases, tuple(table["held_out"]), table["num_base_workloads"])


def find_experiments(root: Path) -> dict[str, list[Path]]:
    """Submission name -> its experiment folders (the original first, then reruns by time)."""
    root = Path(root)
    if not root.is_dir():
        raise PacerUserError(f"AlgoPerf log folder {root} does not exist")
    candidates = [root] if _has_studies(root) else sorted(p for p in root.iterdir() if p.is_dir() and _has_studies(p))
    if not candidates:
        raise PacerUserError(f"no AlgoPerf experiment under {root} (expected study_<k>/<workload>_<framework>/trial_<i>/{EVALS_CSV})")
    experiments: dict[str, list[Path]] = {}
    for folder in candidates:
        experiments.setdefault(RERUN_SUFFIX.sub("", folder.name), []).append(folder)
    return {name: sorted(folders, key=lambda f: (f.name != name, f.name)) for name, folders in experiments.items()}


def _has_studies(folder: Path) -> bool:
    return any(p.is_dir() and p.name.startswith("study_") for p in folder.iterdir())


def _numbered(folder: Path, kind: str) -> list[tuple[int, Path]]:
    found = []
    for p in folder.iterdir():
        match = NUMBERED.match(p.name)
        if p.is_dir() and match and match.group(1) == kind:
            found.append((int(match.group(2)), p))
    return sorted(found)


@dataclass(frozen=True)
class EvalLog:
    """One trial's `eval_measurements.csv`, read (empty for a missing or unreadable file)."""

    jsonl: str
    """Pacer's evals.jsonl: an object per complete row, every column of the CSV,
    `accumulated_submission_time` taken from the time column (`score` where there is one)."""
    columns: dict[str, np.ndarray]
    """`global_step`, `accumulated_submission_time` and the requested columns present, as float
    arrays over the same rows (NaN where a value is not a finite number)."""

    def first_reaching(self, column: str, target: float, maximize: bool) -> int | None:
        """Index of the first row whose `column` meets `target` (>= or <=), None if none does."""
        values = self.columns.get(column)
        if values is None:
            return None
        with np.errstate(invalid="ignore"):
            hits = np.flatnonzero(values >= target if maximize else values <= target)
        return int(hits[0]) if len(hits) else None


NO_EVALS = EvalLog("", {})
JSON_NUMBER = r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?"
"""A CSV cell that is already a JSON number; a file of only such cells is copied as text."""


def read_eval_csv(path: Path, needed: Sequence[str] = ()) -> EvalLog:
    """Read one trial's eval file: values that are not finite numbers (NaN, text, empty) become
    null / NaN; rows cut short (no time or step) are dropped; rows with more cells than the
    header are skipped and a blank header cell's column is left out, as pandas' reader (which
    AlgoPerf's loader uses) does; of a repeated column name the first column is kept. Each
    problem is a warning naming the file.

    A file whose every cell is a JSON number (what AlgoPerf's logger writes; one regular
    expression checks the whole file) is copied cell text by cell text; any other file goes
    through the csv module cell by cell."""
    text = _read_text(path)
    if text is None:
        return NO_EVALS
    header_line, _, body = text.replace("\r\n", "\n").partition("\n")
    header = next(csv.reader([header_line]))
    time_column = "score" if "score" in header else "accumulated_submission_time"
    if time_column not in header or "global_step" not in header:
        warnings.warn(f"{path}: no {time_column} or global_step column; the trial counts as a miss", stacklevel=2)
        return NO_EVALS
    first = {name: i for i, name in reversed(list(enumerate(header)))}  # a repeated column name: its first column (JSON keys are unique)
    kept = [(i, name) for i, name in enumerate(header)
            if name and not name.startswith("Unnamed") and name not in ("accumulated_submission_time", "examples_seen") and first[name] == i]
    kept.append((header.index(time_column), "accumulated_submission_time"))
    wanted = {name: header.index(name) for name in dict.fromkeys(("global_step", time_column, *needed)) if name in header}
    body = body if body.endswith("\n") or not body else body + "\n"
    if _numeric_body(len(header)).fullmatch(body):
        log = _copy_numeric(body, len(header), kept, wanted, time_column)
    else:
        log = _parse_cells(path, body, len(header), kept, wanted, time_column)
    return _without_impossible_clock(path, log, time_column)


def _without_impossible_clock(path: Path, log: EvalLog, time_column: str) -> EvalLog:
    """NO_EVALS (a miss, with a warning naming the file) when a time or step is negative or the
    time runs backwards: such a log was not written by AlgoPerf's clock, and a time to target
    read from it would be meaningless."""
    times, steps = log.columns.get("accumulated_submission_time"), log.columns.get("global_step")
    if times is None or steps is None or not len(times):
        return log
    with np.errstate(invalid="ignore"):
        impossible = bool((times < 0).any() or (steps < 0).any() or (np.diff(times) < 0).any())
    if impossible:
        warnings.warn(f"{path}: negative or decreasing {time_column} or global_step; the trial counts as a miss", stacklevel=3)
        return NO_EVALS
    return log


def _copy_numeric(body: str, width: int, kept: list[tuple[int, str]], wanted: dict[str, int], time_column: str) -> EvalLog:
    template = "{" + ",".join(json.dumps(name).replace("%", "%%") + ":%s" for _, name in kept) + ',"examples_seen":null}\n'
    pick_kept, pick_wanted = itemgetter(*(i for i, _ in kept)), itemgetter(*wanted.values())
    lines, picked = [], []
    for line in body[:-1].split("\n") if body else []:
        cells = line.split(",")
        lines.append(template % pick_kept(cells))
        picked.append(pick_wanted(cells))
    values = np.array(picked, dtype=float).reshape(-1, len(wanted))
    columns = {name: values[:, k] for k, name in enumerate(wanted)}
    columns["accumulated_submission_time"] = columns[time_column]
    return EvalLog("".join(lines), columns)


def _parse_cells(path: Path, body: str, width: int, kept: list[tuple[int, str]], wanted: dict[str, int], time_column: str) -> EvalLog:
    template = "{" + ",".join(json.dumps(name).replace("%", "%%") + ":%s" for _, name in kept) + ',"examples_seen":null}\n'
    lines, rows, cut = [], [], 0
    for line in csv.reader(body.splitlines()):
        if len(line) > width or not any(line):
            continue
        cells = [_number(line[i]) if i < len(line) else None for i in range(width)]
        if cells[wanted[time_column]] is None or cells[wanted["global_step"]] is None:
            cut += 1
            continue
        lines.append(template % tuple(json.dumps(cells[i]) for i, _ in kept))
        rows.append([np.nan if cells[i] is None else cells[i] for i in wanted.values()])
    if cut:
        warnings.warn(f"{path}: dropping {cut} cut-short row(s)", stacklevel=3)
    values = np.array(rows, dtype=float).reshape(-1, len(wanted))
    columns = {name: values[:, k] for k, name in enumerate(wanted)}
    columns["accumulated_submission_time"] = columns[time_column]
    return EvalLog("".join(lines), columns)


@cache
def _numeric_body(width: int) -> re.Pattern[str]:
    return re.compile(f"(?:{JSON_NUMBER}(?:,{JSON_NUMBER}){{{width - 1}}}\n)*")


def _read_text(path: Path) -> str | None:
    """The file's text; None (with a warning) when it is missing, unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        warnings.warn(f"{path}: missing; the trial counts as a miss", stacklevel=3)
        return None
    except (OSError, UnicodeDecodeError) as e:
        warnings.warn(f"{path}: unreadable ({e}); the trial counts as a miss", stacklevel=3)
        return None
    if not text.strip():
        warnings.warn(f"{path}: empty; the trial counts as a miss", stacklevel=3)
        return None
    return text


def _number(text: str) -> float | None:
    """A CSV cell as a finite number (an int where it is written as one), else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(text) if text.isdigit() else value


def import_trial(trial_dir: Path, out: Path, experiment: str, submission: str, workload: str, study: int, trial: int, version: str,
                 ruleset: str) -> tuple[Path, dict[str, object], str]:
    """Write one AlgoPerf trial as a Pacer run record; return its folder, record and evals.jsonl text."""
    table = algoperf_targets(version)
    spec = table["workloads"][workload]
    metric = spec["metric"]
    log = read_eval_csv(trial_dir / EVALS_CSV, (f"validation/{metric}", f"test/{metric}", "preemption_count"))
    maximize = spec["direction"] == "max"
    reached = {split: None if spec[split] is None else log.first_reaching(f"{split}/{metric}", spec[split], maximize) for split in ("validation", "test")}
    factor = table["self_tuning_budget_factor"] if ruleset == "self" else 1.0
    record = {
        "schema": 1, "experiment": experiment, "ruleset": ruleset, "submission": submission, "workload": workload,
        "base_workload": spec["base_workload"], "variant": spec["variant"], "study": study, "trial": trial, "seed": None,
        "status": ("reached" if reached["validation"] is not None else "budget_exhausted") if log.jsonl else "error",
        "hyperparameters": _read_json(trial_dir / "hparams.json"),
        "target": {"metric": metric, "direction": spec["direction"], "validation": spec["validation"], "test": spec["test"]},
        "budget": {"max_runtime_sec": spec["max_runtime_sec"] * factor, "eval_period_sec": None, "step_hint": spec["step_hint"]},
        "time_to_target": {s: _at(log, "accumulated_submission_time", i) for s, i in reached.items()},
        "steps_to_target": {s: _at(log, "global_step", i) for s, i in reached.items()},
        "examples_to_target": {"validation": None, "test": None},
        "preemptions": int(np.nan_to_num(log.columns["preemption_count"]).max(initial=0)) if "preemption_count" in log.columns else 0,
        "fingerprint": {"id": f"algoperf-{version}", "source": "AlgoPerf logs (hardware not recorded)"},
        "source": f"algoperf:{version}",
        "round": {"version": version, "num_base_workloads": table["num_base_workloads"], "held_out": table["held_out"]},
        "imported_from": str(trial_dir),
    }
    run = RunDir(run_path(out, experiment, ruleset, submission, workload, study, trial))
    run.prepare(out, resume=False, overwrite=True)  # `import_algoperf` refused a run already there unless asked to overwrite it
    run.write_evals_text(log.jsonl, durable=False)
    run.write_run(record, durable=False)
    return run.path, record, log.jsonl


def _at(log: EvalLog, column: str, row: int | None) -> float | int | None:
    """`column`'s value at `row` (None for no row); whole numbers (steps) as int."""
    if row is None:
        return None
    value = float(log.columns[column][row])
    return int(value) if column == "global_step" else value


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def import_algoperf(root: Path, out: Path, version: str, ruleset: str, *, overwrite: bool = False) -> ImportSummary:
    """Import every trial under `root` into `out`; return counts, skipped workloads and reruns.

    Raises PacerUserError, before anything is written, when a run folder resolves outside `out`
    (a symbolic link) or, unless `overwrite`, already holds a run."""
    if ruleset not in RULESETS:
        raise PacerUserError(f"unknown ruleset {ruleset!r} (valid: {', '.join(RULESETS)})")
    workloads = algoperf_targets(version)["workloads"]
    summary = ImportSummary()
    tasks: list[TrialTask] = []
    seen: dict[tuple[str, int, str, int], str] = {}
    for submission, folders in find_experiments(root).items():
        summary.submissions.append(submission)
        for folder in folders:
            for study, study_dir in _numbered(folder, "study"):
                for workload_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()):
                    workload = FRAMEWORK_SUFFIX.sub("", workload_dir.name)
                    if workload not in workloads:
                        summary.unknown_workloads.add(workload_dir.name)
                        continue
                    for trial, trial_dir in _numbered(workload_dir, "trial"):
                        key = (submission, study, workload, trial)
                        if key in seen:
                            summary.reruns.append(f"{submission} study_{study} {workload} trial_{trial}: {seen[key]} and {folder.name}")
                        seen.setdefault(key, folder.name)
                        tasks.append((trial_dir, Path(out), folder.name, submission, workload, study, trial, version, ruleset))
    _check_run_folders(tasks, Path(out), overwrite)
    written = _import_trials(tasks)
    summary.runs = len(written)
    os.sync()  # the records were written without a sync each (an import is redone, not resumed): one for all
    cache_written_runs(Path(out), written)  # `pacer score OUT` next reads this instead of every record
    return summary


TrialTask = tuple[Path, Path, str, str, str, int, int, str, str]
"""`import_trial`'s arguments."""
CHUNK = 250
"""Trials per worker task: a leaderboard's logs are thousands of small files, read and written
by one process per core; fewer than two chunks' worth stay in this process."""


def _check_run_folders(tasks: Sequence[TrialTask], out: Path, overwrite: bool) -> None:
    """Refuse a task whose run folder resolves outside `out`, or, unless `overwrite`, already
    holds a run (one line naming the first and the count)."""
    taken = []
    for _, _, experiment, submission, workload, study, trial, _, ruleset in tasks:
        run = RunDir(run_path(out, experiment, ruleset, submission, workload, study, trial))
        check_inside(out, run.path)
        if not overwrite and run.exists():
            taken.append(run.path)
    if taken:
        raise PacerUserError(f"{len(taken)} run folder(s) under {out} already hold a run (e.g. {taken[0]}): "
                             "pass --overwrite to replace their records (other files there are kept), or import into another --out")


def _import_trials(tasks: Sequence[TrialTask]) -> list[tuple[Path, dict[str, object], str]]:
    """`import_trial` of every task, in order; each warning a worker raised is raised again here
    (in order), so that the caller's `warnings.catch_warnings` sees them all."""
    chunks = [tasks[i:i + CHUNK] for i in range(0, len(tasks), CHUNK)]
    workers = min(len(os.sched_getaffinity(0)), len(chunks))
    if workers < 2:
        return _import_chunk(tasks, record_warnings=False)[0]
    written: list[tuple[Path, dict[str, object], str]] = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for part, messages in pool.map(_import_chunk, chunks):
            written += part
            for message in messages:
                warnings.warn(message, stacklevel=2)
    return written


def _import_chunk(tasks: Sequence[TrialTask], record_warnings: bool = True) -> tuple[list[tuple[Path, dict[str, object], str]], list[str]]:
    """Import `tasks` and return their results and, when `record_warnings`, the warnings' messages."""
    if not record_warnings:
        return [import_trial(*task) for task in tasks], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = [import_trial(*task) for task in tasks]
    return written, [str(w.message) for w in caught]


def import_logs(root: Path, out: Path, targets: str, ruleset: str, *, overwrite: bool) -> int:
    """`pacer import-algoperf`: import every AlgoPerf trial under `root` into `out` as run
    records under AlgoPerf `targets` (v0.5, v0.6, v1.0) and `ruleset`, write the problems met
    into `out/import_warnings.txt` and print a summary. Returns 0.

    Raises PacerUserError (one line), before anything is written, for unknown targets, a
    `root` without an experiment, an `out` that cannot be written, or a run already in `out`
    (unless `overwrite`)."""
    algoperf_targets(targets)
    find_experiments(root)  # a folder with no experiment: one line, before anything is written
    check_output_folder(out, "imported run records")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = import_algoperf(root, out, targets, ruleset, overwrite=overwrite)
    problems = [tuple(str(w.message).split(": ", 1)) for w in caught]
    problems += [(unknown, f"skipped unknown workload folder (not in AlgoPerf {targets})") for unknown in sorted(summary.unknown_workloads)]
    problems += [(rerun, "duplicate rerun (scoring keeps the one with more evals; --compat algoperf pools them)") for rerun in summary.reruns]
    if problems:
        log = out / IMPORT_LOG
        log.write_text("".join(f"{': '.join(p)}\n" for p in problems), encoding="utf-8")
        for kind, (count, example) in group_problems(problems).items():
            print(f"warning: {count} x {kind} (e.g. {example})")
        print(f"all {len(problems)} warnings: {log}")
    print(f"imported {summary.runs} runs of {len(summary.submissions)} submissions ({', '.join(summary.submissions)}) into {out}")
    return 0


def group_problems(problems: Sequence[tuple[str, ...]]) -> dict[str, tuple[int, str]]:
    """Problems as (subject, what) -> kind -> (how many, the first one's subject), in first-seen
    order; a kind is WHAT with numbers as N (e.g. "dropping N cut-short row(s)")."""
    groups: dict[str, tuple[int, str]] = {}
    for subject, *what in problems:
        kind = re.sub(r"(?<![\w.])\d+(?![\w.])", "N", what[0] if what else subject)
        count, example = groups.get(kind, (0, subject))
        groups[kind] = (count + 1, example)
    return groups
