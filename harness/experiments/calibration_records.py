"""Where a workload's targets come from: `records/calibration/<workload>.json`, one file per base
workload, `{"base": {...}, "variants": {"<variant>": {...}}}`, each entry the provenance that
`pacer calibrate` wrote (or a `method: provisional` note on how targets were hand-set). The
workload's YAML keeps its settings and, of the calibration, only what runs read (targets,
budget, eval period, step_hint, reference)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from harness import CONFIG_DIR
from harness.core.store import atomic_write

RECORDS_DIR = CONFIG_DIR.parent / "records" / "calibration"


def record_path(workload: str, records_dir: Path = RECORDS_DIR) -> Path:
    """The record file of the base workload named `workload`."""
    return records_dir / f"{workload}.json"


def read_record(path: Path) -> dict[str, dict]:
    """The whole record at `path`; an empty one when there is no file.

    Raises ValueError (json.JSONDecodeError) when the file is not JSON."""
    return json.loads(path.read_text()) if path.exists() else {"variants": {}}


def provenance_of(path: Path, variant: str | None) -> dict[str, object] | None:
    """The provenance of the base workload (or of `variant`) in the record at `path`; None when
    it has none."""
    record = read_record(path)
    return record["variants"].get(variant) if variant else record.get("base")


def write_provenance(path: Path, variant: str | None, provenance: Mapping[str, object]) -> None:
    """Set the provenance of the base workload (or of `variant`) in the record at `path`, keeping
    the other entries; the file is replaced atomically.

    Raises OSError when the file system refuses (the record is then unchanged)."""
    record = read_record(path)
    if variant:
        record["variants"][variant] = dict(provenance)
    else:
        record = {"base": dict(provenance), "variants": record["variants"]}  # the base first, for readers of the file
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2) + "\n")
