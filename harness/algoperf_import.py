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

Targets and budgets come from AlgoPerf's tables shipped in `harness/data/`.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from harness.errors import PacerUserError
from harness.store import RunDir, run_path

VERSIONS = ("v0.5", "v0.6", "v1.0")
RULESETS = ("external", "self")
FRAMEWORK_SUFFIX = re.compile(r"_(jax|pytorch)$")
RERUN_SUFFIX = re.compile(r"-\d{4}(-\d{2}){5}$")
NUMBERED = re.compile(r"^(study|trial)_(\d+)$")
EVALS_CSV = "eval_measurements.csv"


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


def read_eval_csv(path: Path) -> list[dict[str, float | None]]:
    """The eval rows of one trial; [] for a missing or empty file; cut-short rows dropped."""
    if not path.exists():
        warnings.warn(f"{path}: missing; the trial counts as a miss", stacklevel=2)
        return []
    try:
        frame = pd.read_csv(path, on_bad_lines="skip")
    except pd.errors.EmptyDataError:
        warnings.warn(f"{path}: empty; the trial counts as a miss", stacklevel=2)
        return []
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        warnings.warn(f"{path}: unreadable ({e}); the trial counts as a miss", stacklevel=2)
        return []
    time_column = "score" if "score" in frame.columns else "accumulated_submission_time"
    if time_column not in frame.columns or "global_step" not in frame.columns:
        warnings.warn(f"{path}: no {time_column} or global_step column; the trial counts as a miss", stacklevel=2)
        return []
    frame = frame.apply(pd.to_numeric, errors="coerce")
    complete = frame[time_column].notna() & frame["global_step"].notna()
    if not complete.all():
        warnings.warn(f"{path}: dropping {int((~complete).sum())} cut-short row(s)", stacklevel=2)
    frame = frame[complete]
    frame["accumulated_submission_time"] = frame[time_column]
    rows = frame.replace({np.nan: None}).to_dict(orient="records")
    return [{k: v for k, v in row.items() if not str(k).startswith("Unnamed")} for row in rows]


def first_reaching(rows: list[dict[str, float | None]], column: str, target: float, maximize: bool) -> dict[str, float | None] | None:
    for row in rows:
        value = row.get(column)
        if isinstance(value, (int, float)) and (value >= target if maximize else value <= target):
            return row
    return None


def import_trial(trial_dir: Path, out: Path, experiment: str, submission: str, workload: str, study: int, trial: int, version: str, ruleset: str) -> bool:
    """Write one AlgoPerf trial as a Pacer run record; False when its workload is unknown."""
    table = algoperf_targets(version)
    spec = table["workloads"][workload]
    rows = read_eval_csv(trial_dir / EVALS_CSV)
    for row in rows:
        row.setdefault("examples_seen", None)
    maximize = spec["direction"] == "max"
    reached = {split: None if spec[split] is None else first_reaching(rows, f"{split}/{spec['metric']}", spec[split], maximize) for split in ("validation", "test")}
    factor = table["self_tuning_budget_factor"] if ruleset == "self" else 1.0
    record = {
        "schema": 1, "experiment": experiment, "ruleset": ruleset, "submission": submission, "workload": workload,
        "base_workload": spec["base_workload"], "variant": spec["variant"], "study": study, "trial": trial, "seed": None,
        "status": ("reached" if reached["validation"] else "budget_exhausted") if rows else "error",
        "hyperparameters": _read_json(trial_dir / "hparams.json"),
        "target": {"metric": spec["metric"], "direction": spec["direction"], "validation": spec["validation"], "test": spec["test"]},
        "budget": {"max_runtime_sec": spec["max_runtime_sec"] * factor, "eval_period_sec": None, "step_hint": spec["step_hint"]},
        "time_to_target": {s: (r["accumulated_submission_time"] if r else None) for s, r in reached.items()},
        "steps_to_target": {s: (r["global_step"] if r else None) for s, r in reached.items()},
        "examples_to_target": {"validation": None, "test": None},
        "preemptions": int(max(float(r.get("preemption_count") or 0) for r in rows)) if rows else 0,
        "fingerprint": {"id": f"algoperf-{version}", "source": "AlgoPerf logs (hardware not recorded)"},
        "source": f"algoperf:{version}",
        "round": {"version": version, "num_base_workloads": table["num_base_workloads"], "held_out": table["held_out"]},
        "imported_from": str(trial_dir),
    }
    run = RunDir(run_path(out, experiment, ruleset, submission, workload, study, trial))
    run.prepare(resume=False, overwrite=True)
    run.write_evals(rows)
    run.write_run(record)
    return True


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def import_algoperf(root: Path, out: Path, version: str, ruleset: str) -> ImportSummary:
    """Import every trial under `root` into `out`; return counts, skipped workloads and reruns."""
    if ruleset not in RULESETS:
        raise PacerUserError(f"unknown ruleset {ruleset!r} (valid: {', '.join(RULESETS)})")
    workloads = algoperf_targets(version)["workloads"]
    summary = ImportSummary()
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
                        import_trial(trial_dir, Path(out), folder.name, submission, workload, study, trial, version, ruleset)
                        summary.runs += 1
    return summary


def import_command(args: Sequence[str]) -> int:
    """`pacer import-algoperf DIR --out OUT --targets v0.5|v0.6 --ruleset external|self`."""
    parser = argparse.ArgumentParser(prog="pacer import-algoperf", description="Import AlgoPerf logs as Pacer run records.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--targets", default="v0.5")
    parser.add_argument("--ruleset", default="external")
    opts = _parse(parser, args)
    algoperf_targets(opts.targets)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = import_algoperf(opts.dir, opts.out, opts.targets, opts.ruleset)
    for w in caught:
        print(f"warning: {w.message}")
    for unknown in sorted(summary.unknown_workloads):
        print(f"warning: skipped unknown workload folder {unknown} (not in AlgoPerf {opts.targets})")
    for rerun in summary.reruns:
        print(f"duplicate rerun: {rerun} (scoring keeps the one with more evals; --compat algoperf pools them)")
    print(f"imported {summary.runs} runs of {len(summary.submissions)} submissions ({', '.join(summary.submissions)}) into {opts.out}")
    return 0


def _parse(parser: argparse.ArgumentParser, args: Sequence[str]) -> argparse.Namespace:
    """argparse, but bad arguments raise PacerUserError (one line, exit 2) instead of exiting."""
    parser.exit_on_error = False
    try:
        return parser.parse_args(list(args))
    except argparse.ArgumentError as e:
        raise PacerUserError(str(e)) from None
    except SystemExit as e:  # missing required arguments still exit in argparse
        if e.code == 0:
            raise
        raise PacerUserError(f"bad arguments for {parser.prog}: {' '.join(args)} (see {parser.prog} --help)") from None
