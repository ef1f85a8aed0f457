"""Tiny Criteo 1TB data in AlgoPerf's raw layout (`day_<d>_<NN>` TSV files as
datasets/dataset_setup.py leaves them), for tests."""

from __future__ import annotations

import random
from pathlib import Path

TRAIN_FILES = {"day_0_00": 5, "day_0_01": 3, "day_1_00": 4}  # lines per file: 12 training examples
NUM_DAY_23_FILES = 36  # one line each: test day_23_00..18 (19), validation day_23_19..35 (17)
SIZES = {"train": 12, "validation": 17, "test": 19}


def raw_line(rng: random.Random) -> str:
    """label, 13 integers (some empty, some -1 or negative), 26 hex strings (some empty)."""
    label = str(rng.randint(0, 1))
    integers = [rng.choice(["", "-1", "-2", "0", str(rng.randint(1, 10)), str(rng.randint(100, 100_000))]) for _ in range(13)]
    categorical = ["" if rng.random() < 0.1 else f"{rng.getrandbits(32):08x}" for _ in range(26)]
    return "\t".join([label, *integers, *categorical])


def make_raw(root: Path, seed: int = 0) -> Path:
    """Write the tiny raw layout into `root`; returns `root`."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    files = TRAIN_FILES | {f"day_23_{i:02d}": 1 for i in range(NUM_DAY_23_FILES)}
    for name, lines in files.items():
        (root / name).write_text("".join(raw_line(rng) + "\n" for _ in range(lines)))
    return root
