"""`pacer data convert WORKLOAD SOURCE DEST`: one-time conversions of the data layouts that
AlgoPerf's `dataset_setup.py` writes (Arrow, TFRecord, raw TSV) into the files a workload
reads (memory-mapped arrays), without TensorFlow.

Converters are found by convention, like workloads: `workloads/data/<workload>.py` defining
`convert(source_dir, dest_dir) -> Mapping[str, int]` (what it wrote: a count per output
file), which raises OSError, ValueError or KeyError for a missing or malformed source."""

from __future__ import annotations

import importlib

from harness import CONFIG_DIR
from harness.core.errors import PacerUserError

DATA_MODULES = CONFIG_DIR.parent / "workloads" / "data"


def converter_names() -> list[str]:
    """Workloads with a converter (read from the files, without importing them)."""
    return sorted(p.stem for p in DATA_MODULES.glob("*.py") if "\ndef convert(" in p.read_text(encoding="utf-8"))


def convert(workload: str, source: str, dest: str) -> int:
    """`pacer data convert`: convert AlgoPerf's layout of `workload`'s data in the folder
    `source` into the files Pacer reads, in the folder `dest`, and print what was written.
    Returns 0. Raises PacerUserError (one line naming it) for a workload without a converter or
    a source the converter refuses."""
    if workload not in converter_names():
        raise PacerUserError(f"no data converter for workload {workload!r} (valid: {', '.join(converter_names())})")
    module = importlib.import_module(f"workloads.data.{workload}")
    try:
        written = module.convert(source, dest)
    except (OSError, ValueError, KeyError) as e:
        raise PacerUserError(f"pacer data convert {workload}: {e}") from None
    for name, count in written.items():
        print(f"{dest}: {name}: {count:,}")
    return 0
