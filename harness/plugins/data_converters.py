"""`pacer data convert WORKLOAD SOURCE DEST`: one-time conversions of the data layouts that
AlgoPerf's `dataset_setup.py` writes (Arrow, TFRecord, raw TSV) into the files a workload
reads (memory-mapped arrays), without TensorFlow.

Converters are found by convention, like workloads: `workloads/data/<workload>.py` defining
`convert(source_dir, dest_dir) -> Mapping[str, int]` (what it wrote: a count per output
file), which raises OSError, ValueError or KeyError for a missing or malformed source."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from harness import CONFIG_DIR
from harness.core.checks import parse_options
from harness.core.errors import PacerUserError

DATA_MODULES = CONFIG_DIR.parent / "workloads" / "data"


def converter_names() -> list[str]:
    """Workloads with a converter (read from the files, without importing them)."""
    return sorted(p.stem for p in DATA_MODULES.glob("*.py") if "\ndef convert(" in p.read_text(encoding="utf-8"))


def convert_command(args: Sequence[str]) -> int:
    """`pacer data convert WORKLOAD SOURCE DEST`; PacerUserError (exit 2) for an unknown
    workload or a source the converter refuses, naming it in one line."""
    parser = argparse.ArgumentParser(prog="pacer data convert", description="Convert AlgoPerf's data layout of a workload into the files Pacer reads.")
    parser.add_argument("workload", help=f"one of: {', '.join(converter_names())}")
    parser.add_argument("source", help="the folder AlgoPerf's dataset_setup.py wrote")
    parser.add_argument("dest", help="the folder to write (then pass it as workload.data_dir=)")
    if list(args[:1]) in (["-h"], ["--help"]):
        parser.print_help()
        return 0
    if not args or args[0] != "convert":
        raise PacerUserError("usage: pacer data convert WORKLOAD SOURCE DEST (see pacer data convert --help)")
    opts = parse_options(parser, args[1:])
    if opts.workload not in converter_names():
        raise PacerUserError(f"no data converter for workload {opts.workload!r} (valid: {', '.join(converter_names())})")
    convert = importlib.import_module(f"workloads.data.{opts.workload}").convert
    try:
        written = convert(opts.source, opts.dest)
    except (OSError, ValueError, KeyError) as e:
        raise PacerUserError(f"pacer data convert {opts.workload}: {e}") from None
    for name, count in written.items():
        print(f"{opts.dest}: {name}: {count:,}")
    return 0
