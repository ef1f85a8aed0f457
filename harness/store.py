"""The run record on disk, and the loader that turns a results tree into one DataFrame.

One folder per run: `<root>/<experiment>/<ruleset>/<submission>/<workload>/study_<k>/trial_<i>/`
holding

* `evals.jsonl`: one JSON object per evaluation, appended, flushed and fsynced as it happens,
  so a run killed at any moment keeps every finished eval. A torn last line (a kill during
  the write) is ignored on read.
* `run.json`: config, hyperparameters, seeds, status, time/steps/examples to target and the
  hardware fingerprint; always replaced atomically (temp file + rename), never half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1
EVALS_FILE = "evals.jsonl"
RUN_FILE = "run.json"
TERMINAL_STATUSES = frozenset({"reached", "budget_exhausted", "diverged", "error", "complete", "step_cap"})
STATUSES = TERMINAL_STATUSES | {"running", "preempted"}
"""`preempted`: stopped by a signal with a checkpoint saved; `resume=true` continues it."""


class RunExistsError(Exception):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


def run_path(root: Path, experiment: str, ruleset: str, submission: str, workload: str, study: int, trial: int) -> Path:
    return Path(root) / experiment / ruleset / submission / workload / f"study_{study}" / f"trial_{trial}"


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot record {type(value).__name__} in a run record")


def _dumps(record: Mapping[str, object], **kwargs) -> str:
    # NaN/inf are legal metric values (diverged runs); JSON has no literal for them, so they
    # are written as null, and the DataFrame loader restores NaN.
    return json.dumps(_finite_or_none(record), default=_json_default, allow_nan=False, **kwargs)


def _finite_or_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


class RunDir:
    """One run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def evals_path(self) -> Path:
        return self.path / EVALS_FILE

    @property
    def run_path(self) -> Path:
        return self.path / RUN_FILE

    def exists(self) -> bool:
        return self.run_path.exists() or self.evals_path.exists()

    def prepare(self, *, resume: bool, overwrite: bool) -> None:
        """Create the folder, or check what to do with an existing one (never prompts)."""
        if self.exists() and not (resume or overwrite):
            raise RunExistsError(f"run folder {self.path} already holds a run: pass resume=true or overwrite=true")
        if self.exists() and overwrite:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def append_eval(self, row: Mapping[str, object]) -> None:
        with open(self.evals_path, "a", encoding="utf-8") as f:
            f.write(_dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_evals(self) -> list[dict[str, object]]:
        if not self.evals_path.exists():
            return []
        rows = []
        for line in self.evals_path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a kill mid-write; nothing after it was finished
        return rows

    def truncate_evals(self, keep: int) -> None:
        """Keep the first `keep` evals (used on resume from a checkpoint taken after them)."""
        rows = self.read_evals()[:keep]
        atomic_write_text(self.evals_path, "".join(_dumps(r) + "\n" for r in rows))

    def write_run(self, record: Mapping[str, object]) -> None:
        atomic_write_text(self.run_path, _dumps(record, indent=2, sort_keys=True))

    def read_run(self) -> dict[str, object] | None:
        if not self.run_path.exists():
            return None
        return json.loads(self.run_path.read_text(encoding="utf-8"))


RUN_COLUMNS = {
    "experiment": "experiment",
    "ruleset": "ruleset",
    "submission": "submission",
    "workload": "workload",
    "base_workload": "base_workload",
    "variant": "variant",
    "study": "study",
    "trial": "trial",
    "status": "status",
    "seed": "seed",
    "batch_size": "batch_size",
    "target_metric": ("target", "metric"),
    "target_direction": ("target", "direction"),
    "validation_target": ("target", "validation"),
    "test_target": ("target", "test"),
    "max_runtime_sec": ("budget", "max_runtime_sec"),
    "eval_period_sec": ("budget", "eval_period_sec"),
    "step_hint": ("budget", "step_hint"),
    "time_to_validation_target": ("time_to_target", "validation"),
    "time_to_test_target": ("time_to_target", "test"),
    "steps_to_validation_target": ("steps_to_target", "validation"),
    "examples_to_validation_target": ("examples_to_target", "validation"),
    "preemptions": "preemptions",
    "fingerprint_id": ("fingerprint", "id"),
}


def _pick(record: Mapping[str, object], key: str | tuple[str, ...]) -> object:
    if isinstance(key, str):
        return record.get(key)
    value: object = record
    for part in key:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def find_runs(roots: Iterable[Path]) -> list[Path]:
    """Every run folder (one holding a run.json) under the given roots, sorted."""
    return sorted({p.parent for root in roots for p in Path(root).rglob(RUN_FILE)})


def load_results(*roots: Path) -> pd.DataFrame:
    """One tidy DataFrame of a results tree: one row per eval, run columns repeated.

    A run with no eval yet still gets one row (eval columns NaN) so that it counts as a miss.
    Unreadable records are skipped with a warning naming the file, never a crash."""
    frames = []
    for path in find_runs(roots):
        run = RunDir(path)
        try:
            record = run.read_run()
            evals = run.read_evals()
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            warnings.warn(f"skipping unreadable run record {path}: {e}", stacklevel=2)
            continue
        if not isinstance(record, dict):
            warnings.warn(f"skipping run record {path / RUN_FILE}: not a JSON object", stacklevel=2)
            continue
        frame = pd.DataFrame(evals or [{}])
        for column, key in RUN_COLUMNS.items():
            frame[column] = _pick(record, key)
        frame["run_dir"] = str(path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "run_dir"])
    df = pd.concat(frames, ignore_index=True)
    metric_columns = [c for c in df.columns if "/" in c or c.startswith("accumulated_")]
    df[metric_columns] = df[metric_columns].apply(pd.to_numeric, errors="coerce")
    return df
