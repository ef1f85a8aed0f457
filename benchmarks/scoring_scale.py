"""Scale benchmark for scoring and the report: 10,000 runs x 100 evals (1,000,000 eval rows).

    PYTHONPATH=. python benchmarks/scoring_scale.py [--root DIR] [--runs-per-cell 10] [--drop-os-cache]

Writes a synthetic results tree through harness.core.store (20 submissions x 10 workloads x 5 studies
x 10 trials; kept and reused when --root already holds it), then times, on real records:

* the baseline: reading the bytes of every run.json and evals.jsonl, nothing else (the floor of
  any cold load; the cold lines are printed as ratios to it);
* cold: `pacer score`'s path reading every run.json and evals.jsonl (then writing the cache);
* warm: the same path reading the Parquet cache (what a second `pacer score` does);
* the report (`harness.scoring.report.write_report`), warm.

The first read of the tree warms the OS page cache. `--drop-os-cache` (root only) empties it
before the baseline and before the cold score, so that both read from the disk.

Goals (issues 6 and 15): scoring < 10 s cold, report < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.core.store import EVALS_FILE, RUN_FILE, RunDir, find_runs, load_results, run_path
from harness.scoring.report import write_report
from harness.scoring.rules import ScoringRules
from harness.scoring.scorers import score_roots

SUBMISSIONS, WORKLOADS, STUDIES, EVALS = 20, 10, 5, 100


def generate(root: Path, trials: int, seed: int = 0) -> int:
    """Write the tree; returns the number of runs. Each run's accuracy rises to a plateau that
    meets the 0.9 target for about 70% of runs."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, EVALS + 1)
    count = 0
    for s in range(SUBMISSIONS):
        speed = rng.uniform(0.5, 2.0)
        for w in range(WORKLOADS):
            for study in range(STUDIES):
                for trial in range(trials):
                    times = np.cumsum(rng.uniform(5, 15, EVALS)) * speed
                    plateau = rng.uniform(0.85, 0.97)
                    acc = plateau * (1 - np.exp(-steps / rng.uniform(10, 40)))
                    rows = [{"global_step": int(10 * k), "examples_seen": int(1280 * k), "accumulated_submission_time": float(t),
                             "accumulated_eval_time": 0.2 * k, "accumulated_logging_time": 0.01 * k, "total_duration": float(1.25 * t),
                             "train/loss": float(1 - a), "validation/loss": float(1.02 - a), "validation/accuracy": float(a),
                             "test/accuracy": float(a - 0.01), "validation/num_examples": 1000} for k, t, a in zip(steps, times, acc, strict=True)]
                    run = RunDir(run_path(root, "scale", "external", f"sub{s:02d}", f"work{w}", study, trial))
                    run.prepare(root, resume=False, overwrite=True)
                    run.write_evals(rows, durable=False)
                    run.write_run(durable=False, record={"schema": 1, "experiment": "scale", "ruleset": "external", "submission": f"sub{s:02d}", "workload": f"work{w}",
                                   "base_workload": f"work{w}", "variant": None, "study": study, "trial": trial, "status": "budget_exhausted",
                                   "hyperparameters": {"learning_rate": float(rng.uniform(1e-4, 1e-2))},
                                   "target": {"metric": "accuracy", "direction": "max", "validation": 0.9, "test": 0.88},
                                   "budget": {"max_runtime_sec": 2000.0, "eval_period_sec": 10.0, "step_hint": 1000},
                                   "fingerprint": {"id": "bench", "cpu": "synthetic"}})
                    count += 1
    (root / "GENERATED").write_text(json.dumps({"runs": count}))
    return count


def timed(label: str, fn, baseline: float | None = None):
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    ratio = f"  ({seconds / baseline:.1f}x reading the bytes)" if baseline else ""
    print(f"{label:<44} {seconds:7.2f} s{ratio}")
    return value, seconds


def read_bytes(root: Path) -> int:
    """Every run.json and evals.jsonl under `root`, read and dropped: the baseline."""
    return sum(len((run / name).read_bytes()) for run in find_runs([root]) for name in (RUN_FILE, EVALS_FILE))


def drop_os_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "pacer_scoring_scale")
    parser.add_argument("--runs-per-cell", type=int, default=10, help="trials per study (10 gives 10,000 runs)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--drop-os-cache", action="store_true", help="empty the OS page cache before the baseline and the cold score (root only)")
    opts = parser.parse_args()
    if not (opts.root / "GENERATED").exists():
        timed(f"generate the tree under {opts.root}", lambda: generate(opts.root, opts.runs_per_cell))
    (opts.root / ".pacer_results.parquet").unlink(missing_ok=True)
    rules = ScoringRules(bootstrap=opts.bootstrap)
    if opts.drop_os_cache:
        drop_os_cache()
    size, baseline = timed("baseline: read the records' bytes", lambda: read_bytes(opts.root))
    print(f"{'':<44} {size / 1e6:,.0f} MB")
    rows, _ = timed("load: read every record (no cache)", lambda: len(load_results(opts.root)), baseline)
    print(f"{'':<44} {rows:,} eval rows")
    if opts.drop_os_cache:
        drop_os_cache()
    timed("score, cold (read records + write cache)", lambda: score_roots([opts.root], rules), baseline)
    result, _ = timed(f"score, warm (Parquet cache, {opts.bootstrap} bootstrap)", lambda: score_roots([opts.root], rules))
    timed("score, warm, --compat algoperf", lambda: score_roots([opts.root], rules, compat="algoperf"))
    timed("report, warm (HTML + Markdown)", lambda: write_report([opts.root], opts.root / "report", rules=rules))
    print(f"{'':<44} top: {result.leaderboard().index[0]} score {result.scores.max():.4f}")


if __name__ == "__main__":
    main()
