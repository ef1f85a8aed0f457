"""A sweep's manifest and where each of its cells stands: what `pacer status` reads.

`<root>/<experiment>/sweep.json` lists every cell of the grid with its config hash, run folder,
launcher job id, attempts and last known state; `pacer sweep` (`harness.experiments.sweep`) writes it. A
cell's state comes from its run record and the launcher's queue, never from the manifest alone.
Nothing here imports torch, Hydra or submitit, so that following a sweep starts in a moment.
"""

from __future__ import annotations

import enum
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.core.errors import PacerUserError
from harness.core.store import TERMINAL_STATUSES, RunDir, check_inside, config_hash, safe_component
from harness.experiments.slurm import queue_state, slurm_queue

MANIFEST = "sweep.json"
LOCK = ".sweep.lock"
"""Held (flock) by the `pacer sweep` process of the experiment while it launches and, with the
local and inline launchers, while its jobs run."""


class CellState(enum.StrEnum):
    """Where a sweep cell stands (the manifest's `state`); the free-text `reason` beside it
    says why in words, and is never parsed."""

    DONE = "done"
    """Its own final record exists."""
    RUNNING = "running"
    QUEUED = "queued"
    """In the scheduler's queue, not started."""
    PENDING = "pending"
    """Not launched: never submitted, or an inline cell the sweep did not reach."""
    LOST = "lost"
    """Its job ended without a final record (killed, preempted and not requeued): a relaunch resumes the run."""
    FAILED = "failed"
    """The run ended in an error, or a record this sweep did not write sits at its path: a relaunch starts over."""

    @property
    def column(self) -> str:
        """The `pacer status` column it counts in (one of `STATES`)."""
        return {CellState.QUEUED: "pending", CellState.LOST: "failed"}.get(self, self.value)


STATES = ("done", "running", "pending", "failed")
"""The columns of `pacer status`."""
FOREIGN_RECORD = "a run record this sweep did not write sits at the cell's path (pacer sweep names the difference)"
"""A cell's failure reason when its path holds a record with another config (`written_by`)."""


def experiment_dir(results_root: str | Path, experiment: str) -> Path:
    """`<results_root>/<experiment>`, where the manifest and the lock live.

    Raises PacerUserError when `experiment` is not one folder name or the folder resolves,
    through a symbolic link, outside the results root."""
    path = Path(results_root) / safe_component("experiment", experiment)
    check_inside(results_root, path)
    return path


def read_manifest(exp_dir: Path) -> dict[str, object]:
    """The manifest in the experiment's folder `exp_dir`; an empty one when there is none yet.

    Raises PacerUserError when the file cannot be read or is not a manifest pacer sweep wrote."""
    path = exp_dir / MANIFEST
    if not path.exists():
        return {"schema": 1, "experiment": exp_dir.name, "jobs": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PacerUserError(f"cannot read the sweep manifest {path}: {e}") from None
    if problem := _manifest_problem(manifest):
        raise PacerUserError(f"sweep manifest {path}: {problem}; it was not written by pacer sweep (move it aside to start the experiment's manifest anew)")
    return manifest


def _manifest_problem(manifest: object) -> str | None:
    """What makes a parsed sweep.json unusable, or None."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("jobs"), dict):
        return "not an object with a `jobs` object"
    for key, entry in manifest["jobs"].items():
        if not isinstance(entry, dict):
            return f"job {key} is not an object"
        for name, kind in (("hash", str), ("run_dir", str), ("attempts", int)):
            if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool):
                return f"job {key}: {name} is {entry.get(name)!r}"
        for name in ("state", "reason", "job_id", "log"):
            if entry.get(name) is not None and not isinstance(entry[name], str):
                return f"job {key}: {name} is {entry[name]!r}"
        if entry.get("state") not in (None, *CellState):
            return f"job {key}: state is {entry['state']!r} (valid: {', '.join(CellState)})"
        run_dir = Path(entry["run_dir"])
        if run_dir.is_absolute() or ".." in run_dir.parts:
            return f"job {key}: run_dir {entry['run_dir']!r} leaves the results root"
    return None


def written_by(record: Mapping[str, object], cell_hash: str) -> bool:
    """True when `record` is the record of the cell with config hash `cell_hash`."""
    return config_hash(dict(record.get("config") or {})) == cell_hash


def cell_state(entry: Mapping[str, object], run_dir: Path, queue: Mapping[str, str], exp_dir: Path,
               locked: frozenset[tuple[int, int, int]] = frozenset()) -> tuple[CellState, str | None]:
    """(state, reason) of a manifest entry from its run record, the launcher's queue and
    `locked` (`flocked_files()`: a live run holds a lock on its folder, which tells a running
    cell of a local sweep before the sweep has written its job ids).

    The queue is read before the records, so a job that ends in between counts as done."""
    in_queue = queue_state(queue.get(str(entry.get("job_id"))))
    record = RunDir(run_dir).read_run()
    if record is not None and not written_by(record, str(entry["hash"])):
        return CellState.FAILED, FOREIGN_RECORD
    status = record.get("status") if record else None
    if status in TERMINAL_STATUSES and status != "error":
        return CellState.DONE, None
    if status == "error":
        return CellState.FAILED, last_line(record.get("error") or "error")
    if in_queue:
        return (CellState.RUNNING if in_queue == "running" else CellState.QUEUED), None
    if status == "running" and _file_id(run_dir) in locked:
        return CellState.RUNNING, None
    if not entry.get("job_id"):
        return CellState.PENDING, "not submitted"
    if entry.get("job_id") == "inline" and status is None:
        return CellState.PENDING, "not started"
    return CellState.LOST, _lost_reason(status, entry, exp_dir)


def _lost_reason(status: str | None, entry: Mapping[str, object], exp_dir: Path) -> str:
    log_line = _log_line(entry.get("log"), exp_dir)
    what = {"running": "the job ended while the run was running (killed?)", "preempted": "preempted and not requeued"}.get(status, "the job ended without a run record")
    return f"{what}{': ' + log_line if log_line else ''}"


def _log_line(log: object, exp_dir: Path) -> str:
    """The last line of a cell's job log, or "" when it has none. A manifest can be edited by
    anyone: a log that resolves outside the experiment's folder (`/etc/passwd`, a symlink out of
    it) is not read."""
    if not log:
        return ""
    path = Path(str(log)).resolve()
    if not path.is_relative_to(exp_dir.resolve()):
        return "its log is outside the experiment's folder, not read"
    return last_line(path.read_text(errors="replace")) if path.is_file() else ""


def last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def refresh(manifest: dict[str, object], results_root: Path, exp_dir: Path) -> dict[str, int]:
    """Update every entry's `state`/`reason` in place; return the count per `STATES` column. `exp_dir`
    is the experiment's folder (where the manifest was read), never one the manifest names."""
    jobs = manifest["jobs"]
    queue = slurm_queue(manifest["job_name"]) if any(e.get("launcher") == "slurm" and e.get("job_id") for e in jobs.values()) else {}
    queue |= _local_queue(jobs.values())
    locked = flocked_files()
    counts = dict.fromkeys(STATES, 0)
    for entry in jobs.values():
        state, entry["reason"] = cell_state(entry, Path(results_root) / entry["run_dir"], queue, exp_dir, locked)
        entry["state"] = state.value
        counts[state.column] += 1
    return counts


def _local_queue(entries: Iterator[Mapping[str, object]]) -> dict[str, str]:
    alive = {}
    for entry in entries:
        if entry.get("launcher") == "local" and str(entry.get("job_id", "")).isdigit():
            try:
                os.kill(int(entry["job_id"]), 0)
                alive[str(entry["job_id"])] = "RUNNING"
            except OSError:
                pass
    return alive


def wait_until_settled(exp_dir: Path, results_root: Path, poll_sec: float) -> Iterator[tuple[dict[str, object], dict[str, int]]]:
    """Yield (manifest, counts) until nothing is queued or running and no `pacer sweep` of the
    experiment is still at work (a local sweep runs its queue without a scheduler to ask)."""
    while True:
        manifest = read_manifest(exp_dir)
        counts = refresh(manifest, results_root, exp_dir)
        yield manifest, counts
        queued = any(e["state"] == CellState.QUEUED for e in manifest["jobs"].values())
        if counts["running"] == 0 and not queued and not sweep_at_work(exp_dir):
            return
        time.sleep(poll_sec)


def sweep_at_work(exp_dir: Path) -> bool:
    """Whether a `pacer sweep` process holds the experiment's lock."""
    return (exp_dir / LOCK).exists() and _file_id(exp_dir / LOCK) in flocked_files()


def flocked_files() -> frozenset[tuple[int, int, int]]:
    """(device major, device minor, inode) of every file or folder that some process holds a
    flock on, from Linux's /proc/locks (read only: testing a lock by taking it could refuse a
    run starting at that moment). Empty where there is no /proc/locks."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return frozenset()
    held = set()
    for fields in (line.split() for line in text.splitlines()):
        if len(fields) >= 6 and fields[1] == "FLOCK":  # waiters ("->") are not holders
            major, minor, inode = fields[5].split(":")
            held.add((int(major, 16), int(minor, 16), int(inode)))
    return frozenset(held)


def _file_id(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
