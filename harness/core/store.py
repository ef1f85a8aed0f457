"""The run record on disk, and the loader that turns a results tree into one DataFrame.

One folder per run: `<root>/<experiment>/<ruleset>/<submission>/<workload>/study_<k>/trial_<i>/`
holding

* `evals.jsonl`: one JSON object per evaluation, appended, flushed and fsynced as it happens,
  so a run killed at any moment keeps every finished eval. A torn last line (a kill during
  the write) is ignored on read.
* `run.json`: config, hyperparameters, seeds, status, time/steps/examples to target, the
  hardware fingerprint, the clock the times use (`clock.kind`: wall or normalized) and whether
  the machine was oversubscribed (`contention.contended`); always replaced atomically (temp file + rename), never half-written.
* `checkpoint.pt` while a run is preempted or checkpointed (`harness.core.checkpoint`).

Each name in the path is one folder name (`safe_component`), and every folder Pacer creates or
clears resolves inside the results root (`check_inside`), so no name or symbolic link makes it
write or delete anywhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import PacerUserError, StorageError

SCHEMA_VERSION = 1
EVALS_FILE = "evals.jsonl"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
"""Written by `harness.core.checkpoint`; named here so that clearing a run needs no torch."""
RECORD_FILES = (RUN_FILE, EVALS_FILE, CHECKPOINT_FILE)
"""What Pacer writes into a run folder (each through a temp file `.<name>.tmp<pid>` at times)."""
TERMINAL_STATUSES = frozenset({"reached", "budget_exhausted", "diverged", "error", "complete", "step_cap"})
STATUSES = TERMINAL_STATUSES | {"running", "preempted"}
"""`preempted`: stopped by a signal with a checkpoint saved; `resume=true` continues it."""
UNHASHED_KEYS = ("resume", "overwrite", "quiet", "results_root", "checkpoint_every_sec")
"""Keys that may change between re-runs (and on resume) without making runs incomparable."""


class RunExistsError(Exception):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


def config_hash(cfg: Mapping[str, object]) -> str:
    """A short hash of a run's config without its `UNHASHED_KEYS`: equal for the configs of
    comparable runs, so a record's `config` tells which config wrote it."""
    comparable = {k: v for k, v in cfg.items() if k not in UNHASHED_KEYS}
    return hashlib.sha256(json.dumps(comparable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_path(root: Path | str, experiment: str, ruleset: str, submission: str, workload: str, study: int, trial: int) -> Path:
    """`<root>/<experiment>/<ruleset>/<submission>/<workload>/study_<study>/trial_<trial>`.

    Raises PacerUserError when a name is not one folder name (`safe_component`)."""
    names = {"experiment": experiment, "ruleset.name": ruleset, "submission.name": submission, "workload.name": workload}
    return Path(root).joinpath(*(safe_component(key, name) for key, name in names.items()), f"study_{study}", f"trial_{trial}")


def safe_component(key: str, value: object) -> str:
    """`value` as a folder name, unchanged when it is exactly one.

    Raises PacerUserError naming `key` and the value when it is empty, `.` or `..`, or holds `/`,
    `\\` or NUL: joined to the results root, it would name a folder elsewhere (or above it)."""
    name = str(value)
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise PacerUserError(f"{key}={name!r} must be one folder name (not empty, . or .., without /, \\ or NUL): it names a folder under the results root")
    return name


def check_inside(root: Path | str, path: Path) -> None:
    """Raise PacerUserError when `path`, its symbolic links followed, lies outside the results
    root `root` (itself followed, so a linked results root is fine): a `study_*` or experiment
    folder linked elsewhere would have Pacer write there, and with overwrite delete there."""
    # os.path on strings: half the cost of Path.resolve, which an import pays for every trial
    resolved, inside = os.path.realpath(path), os.path.realpath(root)
    if resolved != inside and not resolved.startswith(os.path.join(inside, "")):
        raise PacerUserError(f"{path} resolves to {resolved}, outside the results root {inside} (through a symbolic link): "
                             "Pacer writes and deletes only inside it; replace the link with a folder")


def check_output_folder(path: Path, what: str) -> None:
    """Check, before the work and without creating anything, that the folder `path` for `what`
    (a report, score tables, imported records) can be written: it, or the nearest folder above
    it that exists, must be a writable folder. Raises PacerUserError (one line)."""
    if not str(path).strip():
        raise PacerUserError(f"an empty path names no folder for {what}: give one")
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PacerUserError(f"cannot write {what} to {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "permission denied"
        raise PacerUserError(f"cannot write {what} to {path}: {existing} is not writable ({reason})")


def atomic_write(path: Path, content: str | bytes, *, durable: bool = True) -> None:
    """Replace `path` with `content` (text is written as UTF-8) so that readers see the old or
    the new file, never a mix. `durable`: also on disk when this returns (fsync of the file and
    its folder, ~2 ms each).

    Raises OSError when the file system refuses (full, read-only); `path` is then unchanged and
    no temporary file is left."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def writing_record(path: Path) -> Iterator[None]:
    """Turn the file system's refusal to write a run's record file into `StorageError`."""
    try:
        yield
    except OSError as e:
        raise storage_error(path, e) from None


def storage_error(path: Path, error: OSError) -> StorageError:
    """The one line for a record file the system would not write."""
    return StorageError(f"cannot write {path}: {error.strerror or error}; every eval recorded before it is kept "
                        "and the run can continue: free space or restore write access, then pass resume=true")


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
    # are written as null, and the DataFrame loader restores NaN. Most records have none, and
    # walking every value in Python first would cost more than encoding it.
    try:
        return json.dumps(record, default=_json_default, allow_nan=False, **kwargs)
    except ValueError:
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

    def prepare(self, root: Path | str, *, resume: bool, overwrite: bool) -> None:
        """Create the folder, or check what to do with an existing one (never prompts).
        `overwrite` deletes the old run's record files (`remove_records`); any other file in
        the folder is kept.

        Raises PacerUserError when the folder resolves outside the results root `root`
        (`check_inside`), RunExistsError when it holds a run and neither `resume` nor
        `overwrite` is given."""
        check_inside(root, self.path)
        if self.exists() and not (resume or overwrite):
            raise RunExistsError(f"run folder {self.path} already holds a run: pass resume=true or overwrite=true")
        if overwrite:
            self.remove_records()
        self.path.mkdir(parents=True, exist_ok=True)

    def remove_records(self) -> None:
        """Delete what Pacer wrote here (`RECORD_FILES` and the temp files of writes that a kill
        cut short), never the folder or anything else in it: it may hold the user's files."""
        for name in RECORD_FILES:
            (self.path / name).unlink(missing_ok=True)
            for leftover in self.path.glob(f".{name}.tmp*"):
                leftover.unlink(missing_ok=True)

    def append_eval(self, row: Mapping[str, object]) -> None:
        """Append one eval durably. Raises StorageError when the file system refuses; a partly
        written line is cut off again where possible (and ignored on read where not)."""
        line = _dumps(row) + "\n"
        size = self.evals_path.stat().st_size if self.evals_path.exists() else 0
        with writing_record(self.evals_path):
            try:
                with open(self.evals_path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    os.truncate(self.evals_path, size)
                raise

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

    def write_evals(self, rows: Iterable[Mapping[str, object]], *, durable: bool = True) -> None:
        """Replace the eval log with `rows` at once (used by importers; `durable=False` leaves the
        sync to the caller)."""
        self.write_evals_text("".join(_dumps(r) + "\n" for r in rows), durable=durable)

    def write_evals_text(self, jsonl: str, *, durable: bool = True) -> None:
        """Replace the eval log with `jsonl`: JSON objects, one a line, each line ending in a newline."""
        with writing_record(self.evals_path):
            atomic_write(self.evals_path, jsonl, durable=durable)

    def write_run(self, record: Mapping[str, object], *, durable: bool = True) -> None:
        with writing_record(self.run_path):
            atomic_write(self.run_path, _dumps(record, indent=2, sort_keys=True), durable=durable)

    def read_run(self) -> dict[str, object] | None:
        """The run record, or None when there is none yet.

        Raises PacerUserError naming the file when it is not a JSON object (Pacer replaces it
        atomically, so such a file was damaged or written by something else)."""
        if not self.run_path.exists():
            return None
        try:
            record = json.loads(self.run_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PacerUserError(f"run record {self.run_path} cannot be read ({e}): move it aside") from None
        if not isinstance(record, dict):
            raise PacerUserError(f"run record {self.run_path} is not a JSON object: move it aside")
        if record.get("status") not in STATUSES or not isinstance(record.get("config", {}), dict):
            raise PacerUserError(f"run record {self.run_path} is damaged (status {record.get('status')!r}, or a config that is not an object): move it aside")
        return record


RUN_COLUMNS: dict[str, str | tuple[str, ...]] = {
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
    "clock": ("clock", "kind"),
    "contended": ("contention", "contended"),
    "fingerprint_id": ("fingerprint", "id"),
    "hardware": ("fingerprint", "gpu"),
    "cpu": ("fingerprint", "cpu"),
    "torch_version": ("fingerprint", "torch"),
    "pacer_version": ("fingerprint", "pacer"),
    "git_commit": ("fingerprint", "git_commit"),
    "started_at": "started_at",
    "finished_at": "finished_at",
    "source": "source",
}
"""Run-record fields repeated on every eval row (column name -> key path in run.json).
`hyperparameters` travels too, as a JSON string, and `contention_reasons` as one "; "-joined string."""
RUN_DEFAULTS: dict[str, object] = {"clock": "wall", "contended": False}
"""Values for records written before the field existed: a record without a `clock` block was
timed by the wall clock, and one without a `contention` block was not flagged."""
EVAL_NUMERIC_COLUMNS = ("global_step", "examples_seen", "total_duration")
"""Eval columns made numeric on load besides `accumulated_*` and `<split>/<metric>` (an eval log
whose values are all null would otherwise load as objects)."""
LOADER_VERSION = b"3"
"""Part of the cache signature: bump it when the flattening changes, so that old caches (which
lack the new columns) are rebuilt instead of reused."""
CACHE_FILE = ".pacer_results.parquet"
CACHE_KEY = b"pacer_signature"


REQUIRED_COLUMNS = ("submission", "workload", "study", "trial", "status", "target_metric", "target_direction")
"""Run columns without which a record cannot be scored; a record lacking one is skipped."""
NUMBER_COLUMNS = frozenset({"seed", "batch_size", "validation_target", "test_target", "max_runtime_sec", "eval_period_sec", "step_hint",
                            "time_to_validation_target", "time_to_test_target", "steps_to_validation_target", "examples_to_validation_target", "preemptions"})
FLAG_COLUMNS = frozenset({"contended"})
"""The other run columns hold text (or null)."""


def _pick(record: Mapping[str, object], key: str | tuple[str, ...]) -> object:
    if isinstance(key, str):
        return record.get(key)
    value: object = record
    for part in key:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def find_runs(roots: Iterable[Path]) -> list[Path]:
    """Every run folder (one holding a run.json) under the given roots, sorted."""
    # os.walk lists each folder once; Path.rglob costs about three times as much on a large tree.
    return sorted({Path(folder) for root in roots for folder, _, files in os.walk(root) if RUN_FILE in files})


def load_results(*roots: Path, cache: bool = False) -> pd.DataFrame:
    """One tidy DataFrame of a results tree: one row per eval, run columns repeated.

    A run with no eval yet still gets one row (eval columns NaN) so that it counts as a miss.
    Unreadable records are skipped with a warning naming the file, never a crash. With
    `cache=True` each root keeps a Parquet copy (`.pacer_results.parquet`) that is reused
    while no run.json or evals.jsonl under it has changed (size or modification time)."""
    if cache:
        frames = [_load_root_cached(Path(root)) for root in roots]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else _empty_frame()
    return _load_runs(find_runs(roots))


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=[*RUN_COLUMNS, "contention_reasons", "hyperparameters", "run_dir"])


def _load_runs(paths: list[Path]) -> pd.DataFrame:
    runs: list[dict[str, object]] = []
    read: list[Path] = []
    for path in paths:
        row = _read_run(path)
        if row is not None:
            runs.append(row)
            read.append(path)
    return _frame_of(runs, _EvalLogs(read), read)


class _EvalLogs(Sequence[bytes]):
    """The evals.jsonl bytes of each run folder, read when asked for (b"" when absent)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):  # type: ignore[override]
        return _read_if_present(RunDir(self.paths[index]).evals_path)


def _frame_of(runs: list[dict[str, object]], texts: Sequence[bytes], paths: list[Path]) -> pd.DataFrame:
    """The tidy frame of runs' columns (`_run_columns`) and their evals.jsonl contents."""
    if not runs:
        return _empty_frame()
    evals, counts = _parse_evals(texts, paths)
    run_table = pd.DataFrame(runs)
    owner = np.repeat(np.arange(len(runs)), counts)
    empty = np.flatnonzero(np.asarray(counts) == 0)
    if len(empty):  # a run without evals still gets one row, so that it counts as a miss
        evals = pd.concat([evals, pd.DataFrame(index=range(len(empty)))], ignore_index=True)
        owner = np.concatenate([owner, empty])
    order = np.argsort(owner, kind="stable")
    evals = evals.iloc[order].reset_index(drop=True)
    df = pd.concat([evals, run_table.iloc[owner[order]].reset_index(drop=True)], axis=1)
    metric_columns = [c for c in df.columns if "/" in c or c.startswith("accumulated_") or c in EVAL_NUMERIC_COLUMNS]
    mixed = [c for c in metric_columns if not pd.api.types.is_numeric_dtype(df[c])]  # a column holding text as well as numbers
    if mixed:
        numeric = df[mixed].apply(pd.to_numeric, errors="coerce")
        _warn_not_numbers(df, df[mixed].notna() & numeric.isna())
        df[mixed] = numeric
    return df


def _warn_not_numbers(df: pd.DataFrame, not_numbers: pd.DataFrame) -> None:
    """One warning per eval log holding values that are not numbers (read as missing: a miss)."""
    rows = not_numbers.any(axis=1)
    for run_dir, group in not_numbers[rows].groupby(df.loc[rows, "run_dir"]):
        columns = [c for c in group.columns if group[c].any()]
        warnings.warn(f"{Path(str(run_dir)) / EVALS_FILE}: {int(group.to_numpy().sum())} value(s) of {', '.join(columns)} are not numbers; "
                      "read as missing", stacklevel=4)


def _read_run(path: Path) -> dict[str, object] | None:
    """The run columns of `path`'s run.json, or None (with a warning naming the file) when it
    cannot be read or has the wrong shape."""
    try:
        record = json.loads(RunDir(path).run_path.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.warn(f"skipping unreadable run record {path / RUN_FILE}: {e}", stacklevel=3)
        return None
    if not isinstance(record, dict):
        warnings.warn(f"skipping run record {path / RUN_FILE}: not a JSON object", stacklevel=3)
        return None
    row = _run_columns(record, path)
    if problem := _shape_problem(row):
        warnings.warn(f"skipping run record {path / RUN_FILE}: {problem}", stacklevel=3)
        return None
    return row


def _shape_problem(row: Mapping[str, object]) -> str | None:
    """What makes a record's run columns unusable (a missing key, a value of the wrong type:
    a hand-edited, truncated or foreign run.json), or None."""
    for column in REQUIRED_COLUMNS:
        if row[column] is None or row[column] == "":
            return f"no {RUN_COLUMNS[column] if isinstance(RUN_COLUMNS[column], str) else '.'.join(RUN_COLUMNS[column])}"
    for column in ("study", "trial"):
        value = row[column]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{column} is {value!r}, not a whole number >= 0"
    if row["status"] not in STATUSES:
        return f"status {row['status']!r} is not one of {', '.join(sorted(STATUSES))}"
    if row["target_direction"] not in ("max", "min"):
        return f"target.direction {row['target_direction']!r} is not max or min"
    for column, value in row.items():
        if value is None or column in ("study", "trial", "hyperparameters", "run_dir", "contention_reasons"):
            continue
        if column in NUMBER_COLUMNS:
            wrong = isinstance(value, bool) or not isinstance(value, int | float)
        elif column in FLAG_COLUMNS:
            wrong = not isinstance(value, bool)
        else:
            wrong = not isinstance(value, str)
        if wrong:
            return f"{column} is {value!r} ({type(value).__name__})"
    return None


def _run_columns(record: Mapping[str, object], path: Path) -> dict[str, object]:
    """A run record's fields as the frame's run columns (RUN_COLUMNS and the derived ones)."""
    row = {column: _pick(record, key) for column, key in RUN_COLUMNS.items()}
    for column, default in RUN_DEFAULTS.items():
        if row[column] is None:
            row[column] = default
    reasons = _pick(record, ("contention", "reasons"))
    row["contention_reasons"] = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""
    row["hyperparameters"] = json.dumps(record.get("hyperparameters") or {}, sort_keys=True, default=str)
    row["run_dir"] = str(path)
    return row


def _read_if_present(path: Path) -> bytes:
    """The file's bytes; b"" when it does not exist (a run that has not evaluated yet)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _parse_evals(texts: Sequence[bytes], paths: list[Path]) -> tuple[pd.DataFrame, list[int]]:
    """All eval lines in one Arrow JSON parse; a file with a bad line falls back to the
    line-by-line reader, which keeps the lines before it (a torn tail from a kill)."""
    import pyarrow.json as pajson

    lines = _CompleteLines(texts)
    try:
        table = pajson.read_json(lines)
        if table.num_rows == sum(lines.counts) and len(lines.counts) == len(texts):
            return table.to_pandas(), lines.counts
    except Exception:  # noqa: BLE001 - any parse failure means: find the bad file the slow way
        pass
    rows: list[dict[str, object]] = []
    counts = []
    for text, path in zip(texts, paths, strict=True):
        parsed = _parse_lines(text, path)
        rows.extend(parsed)
        counts.append(len(parsed))
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame(index=range(0)), counts


class _CompleteLines(io.RawIOBase):
    """The complete lines of `texts`, one after the other, as one stream for pyarrow's JSON
    reader; `counts` holds each text's line count once read. A stream, not one joined bytes
    object: allocating (page-faulting) the hundreds of MB a large results tree holds costs
    seconds on a VM, more than parsing them."""

    def __init__(self, texts: Sequence[bytes]):
        self.texts = texts
        self.counts: list[int] = []
        self.pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        filled = 0
        while filled < len(buffer):
            if not self.pending:
                if len(self.counts) == len(self.texts):
                    break
                text = self.texts[len(self.counts)]
                complete = text[: text.rfind(b"\n") + 1]  # without a torn last line
                self.counts.append(complete.count(b"\n"))
                self.pending = memoryview(complete)
            n = min(len(buffer) - filled, len(self.pending))
            buffer[filled : filled + n] = self.pending[:n]
            self.pending, filled = self.pending[n:], filled + n
        return filled


def _parse_lines(text: bytes, path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number < len(text.splitlines()) or text.endswith(b"\n"):
                warnings.warn(f"{path / EVALS_FILE}: line {number} is not JSON; keeping the {len(rows)} evals before it", stacklevel=4)
            break
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _signature(paths: list[Path]) -> str:
    digest = hashlib.sha256(LOADER_VERSION)
    for path in paths:
        for name in (RUN_FILE, EVALS_FILE):
            try:
                st = (path / name).stat()
                digest.update(f"{path}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
            except FileNotFoundError:
                digest.update(f"{path}/{name}:-;".encode())
    return digest.hexdigest()


def _load_root_cached(root: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = find_runs([root])
    signature = _signature(paths).encode()
    cache_path = root / CACHE_FILE
    if cache_path.exists():
        try:
            table = pq.read_table(cache_path)
            if (table.schema.metadata or {}).get(CACHE_KEY) == signature:
                return table.to_pandas()
        except (OSError, pa.ArrowException):
            pass  # a broken cache is rebuilt below
    df = _load_runs(paths)
    if paths:  # an empty or missing root gets no cache file
        _write_cache(root, df, signature)
    return df


def _write_cache(root: Path, df: pd.DataFrame, signature: bytes) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache_path = root / CACHE_FILE
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), CACHE_KEY: signature})
    tmp = cache_path.with_name(f".{cache_path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, cache_path)
    except OSError as e:
        warnings.warn(f"cannot write the results cache {cache_path}: {e}", stacklevel=4)


def cache_written_runs(root: Path, written: Sequence[tuple[Path, Mapping[str, object], str]]) -> bool:
    """Write `root`'s Parquet cache from runs just written (path, record, evals.jsonl text), so
    that the next `load_results(root, cache=True)` needs no parse: what an importer does. Only
    when they are all the runs under `root` (else False: the next load reads the records).

    The frame is built by the loader's own code from the same record and text, and the cache
    carries the files' signature, so it is reused exactly while they stay as written."""
    paths = find_runs([root])
    if sorted(Path(p) for p, _, _ in written) != paths:
        return False
    by_path = {Path(p): (record, text) for p, record, text in written}
    df = _frame_of([_run_columns(by_path[p][0], p) for p in paths], [by_path[p][1].encode() for p in paths], paths)
    _write_cache(root, df, _signature(paths).encode())
    return True
