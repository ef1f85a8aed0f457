"""Host-side cost of one training batch of `criteo1tb` through `LoaderWorkload`'s stream, per
example, against reading the same rows straight from the memory-mapped arrays (the baseline,
measured in the same run).

Measured on generated arrays of Criteo's shapes (13 dense float32, 26 categorical int32 and a
label per example) in a temporary folder:

* keys: `ShardedStream.local_keys` for one batch (the epoch's Feistel permutation and seeds);
* batched: the path `criteo1tb` takes (`augments_examples = False`): one `__getitems__` read
  of the batch, handed to its `collate` whole;
* seeded: the path of workloads with random augmentation, one seeded read per example (on a
  slice of the batch: it is three orders of magnitude slower).

    python benchmarks/loader_throughput.py [--rows 2000000] [--batch 262144]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from harness.plugins.loader_workload import ShardedStream, _Keyed  # noqa: E402
from workloads.data.criteo1tb import CriteoArrays, collate  # noqa: E402


def write_arrays(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    np.save(folder / "dense.npy", rng.random((rows, 13), dtype=np.float32))
    np.save(folder / "categorical.npy", rng.integers(0, 1 << 22, (rows, 26), dtype=np.int32))
    np.save(folder / "labels.npy", (rng.random(rows) < 0.03).astype(np.float32))


def per_example_us(fn, n: int, repeats: int = 3) -> float:
    """The best of `repeats` timings of `fn()`, in microseconds per example of its `n`."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=262_144, help="AlgoPerf's criteo1tb batch size")
    parser.add_argument("--seeded", type=int, default=4096, help="examples timed on the seeded path")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_arrays(folder, opts.rows)
        dataset = CriteoArrays(folder)
        stream = ShardedStream(opts.rows, 1, opts.batch, 0, 1, 0)
        keys = stream.local_keys(0, opts.batch)
        maps = [np.load(folder / f"{name}.npy", mmap_mode="r") for name in ("dense", "categorical", "labels")]
        baseline = per_example_us(lambda: [m[keys[:, 0]] for m in maps], opts.batch)
        rows = {
            "keys (permutation + seeds)": per_example_us(lambda: stream.local_keys(0, opts.batch), opts.batch),
            "batched read + collate (criteo1tb)": per_example_us(lambda: collate(_Keyed(dataset, seeded=False).__getitems__(keys)), opts.batch),
            "seeded read per example + collate": per_example_us(lambda: collate(_Keyed(dataset, seeded=True).__getitems__(keys[:opts.seeded])), opts.seeded, 1),
        }
    print(f"{opts.rows:,} rows, batch {opts.batch:,}; baseline (fancy-indexed memmap read of the batch's rows): {baseline:.2f} us/example")
    for name, value in rows.items():
        print(f"{name:<38} {value:9.2f} us/example  {value / baseline:8.1f}x baseline  {value * opts.batch / 1e6:7.2f} s/batch")


if __name__ == "__main__":
    main()
