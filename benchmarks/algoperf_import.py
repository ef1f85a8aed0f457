"""Import + score of a leaderboard's worth of AlgoPerf logs: `pacer import-algoperf` then `pacer score`.

    PYTHONPATH=. python benchmarks/algoperf_import.py [--trials 4000] [--root DIR]

Writes a synthetic log tree in AlgoPerf's format (per trial `eval_measurements.csv` with the
columns AlgoPerf's logger writes, `hparams.json` and `meta_data_0.json`; per submission
`study_<k>/<workload>_<framework>/trial_<i>/`) shaped like the v0.5 external-tuning logs:
5 studies x 5 trials of the 8 base workloads and the 6 held-out variants per submission, as
many submissions as `--trials` needs, 20-60 evals per trial, 1% of trials without an eval file
(as in the real logs). Kept and reused when --root already holds it. Then times, each as a
user runs it (a fresh `python -m harness` process, imports included):

* `pacer import-algoperf ROOT/logs --out ROOT/imported_<time> --targets v0.5` (a new folder;
  earlier ones are deleted first, then 5 s pass: on a disk mounted with `discard` the deletion
  otherwise slows the import's own writes several-fold);
* `pacer score ROOT/imported_<time> --bootstrap 1000` (what a user runs next: it reads the
  Parquet cache that the import wrote, not the records).

Goal (issue 15): both together under 15 s on 2 cores for 4,000 trials.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.scoring.algoperf_import import algoperf_round, algoperf_targets  # noqa: E402

STUDIES, TRIALS = 5, 5
FRAMEWORKS = ("jax", "pytorch")


def workloads() -> list[str]:
    """v0.5's scored workloads: its base workloads and held-out draw."""
    round_ = algoperf_round("v0.5")
    return [*round_.base_workloads, *round_.held_out]


def trial_rows(rng: np.random.Generator, metric: str, direction: str, target: float) -> str:
    """One eval_measurements.csv: a curve that approaches a final value near the target."""
    n = int(rng.integers(20, 61))
    times = np.cumsum(rng.uniform(100, 400, n))
    final = target * (1 + rng.normal(0, 0.02) * (1 if direction == "max" else -1))
    start = target * (0.3 if direction == "max" else 3.0)
    curve = start + (final - start) * (1 - np.exp(-4 * np.arange(1, n + 1) / n)) / (1 - np.exp(-4))
    losses = "" if metric == "loss" else "loss"  # AlgoPerf's logger writes each split's loss once, the metric beside it
    header = ["accumulated_eval_time", "accumulated_logging_time", "accumulated_submission_time", "global_step", "preemption_count", "score", "total_duration"]
    header += [f"{split}/{name}" for split in ("train", "validation", "test") for name in (metric, losses, "num_examples") if name and not (split == "train" and name == "num_examples")]
    lines = [",".join(header)]
    for k in range(n):
        t, v = times[k], curve[k]
        per_split = f"{v:.6f}," + (f"{1.1 / (k + 1):.6f}," if losses else "")
        lines.append(f"{12.5 * (k + 1):.3f},{0.4 * (k + 1):.3f},{t:.3f},{100 * (k + 1)},0,{t:.3f},{1.2 * t:.3f},{per_split[:-1]},{per_split}50000,{per_split}50000")
    return "\n".join(lines) + "\n"


def generate(logs: Path, trials: int, seed: int = 0) -> int:
    """Write the tree; returns the number of trial folders."""
    rng = np.random.default_rng(seed)
    table = algoperf_targets("v0.5")["workloads"]
    names = workloads()
    per_submission = len(names) * STUDIES * TRIALS
    count = 0
    for s in range(-(-trials // per_submission)):
        for study in range(STUDIES):
            for workload in names:
                spec = table[workload]
                for trial in range(1, TRIALS + 1):
                    folder = logs / f"submission_{s:02d}" / f"study_{study}" / f"{workload}_{FRAMEWORKS[s % 2]}" / f"trial_{trial}"
                    folder.mkdir(parents=True)
                    (folder / "hparams.json").write_text(json.dumps({"learning_rate": float(rng.uniform(1e-4, 1e-2)), "beta1": 0.9}))
                    (folder / "meta_data_0.json").write_text(json.dumps({"workload": workload, "trial": trial}))
                    if rng.random() >= 0.01:
                        (folder / "eval_measurements.csv").write_text(trial_rows(rng, spec["metric"], spec["direction"], spec["validation"]))
                    count += 1
    return count


def timed(label: str, args: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{label} failed ({result.returncode}):\n{result.stderr}")
    print(f"{label:<44} {elapsed:7.2f} s")
    tail = result.stdout.strip().splitlines()
    print("  | " + "\n  | ".join(tail[:12]))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "pacer_algoperf_import")
    opts = parser.parse_args()
    logs, out = opts.root / "logs", opts.root / f"imported_{time.strftime('%Y%m%d_%H%M%S')}"
    marker = opts.root / f"GENERATED_{opts.trials}"
    if not marker.exists():
        shutil.rmtree(opts.root, ignore_errors=True)
        start = time.perf_counter()
        count = generate(logs, opts.trials)
        marker.write_text(str(count))
        print(f"generated {count} trials under {logs} in {time.perf_counter() - start:.1f} s")
    for old in opts.root.glob("imported*"):
        shutil.rmtree(old)  # before the timing: deleting 8,000 files keeps the disk busy a while (discard)
    time.sleep(5)
    total = timed("pacer import-algoperf (--targets v0.5)", ["import-algoperf", str(logs), "--out", str(out), "--targets", "v0.5"])
    total += timed("pacer score (bootstrap 1000; the import's cache)", ["score", str(out), "--bootstrap", "1000"])
    print(f"{'import + score':<44} {total:7.2f} s (goal < 15 s on 2 cores)")


if __name__ == "__main__":
    main()
