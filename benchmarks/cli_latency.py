"""Start-up latency of `pacer --help` and of `pacer status` on a 1,000-cell sweep.

    PYTHONPATH=. python benchmarks/cli_latency.py [--root DIR] [--repeats 7]

Writes a results tree as a finished sweep leaves it (kept and reused when --root already holds
it): `pacer sweep --dry` of 2 submissions x the CPU suite's 5 workloads x 5 studies x 20 trials
(launcher=inline) writes the real manifest, then each cell gets a run record through
harness.core.store.RunDir with the cell's own config: 96% finished, 2% errors (the failure lines of
the table), 2% never started. No eval logs: status reads only run.json.

Then times each command as a user runs it, in a fresh process from the folder that holds
`results/`, round by round (so that load changes hit all of them alike), after one untimed run
each (it compiles the .pyc files):

* the baseline: `python -c pass`, the interpreter's own start-up;
* `python -m harness --help`;
* `python -m harness status experiment=latency` (1,000 records read, the table printed).

and prints the median seconds of each and its ratio to the baseline.

Goals (issue 16): `pacer --help` < 1 s, `pacer status` of 1,000 cells < 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from harness.cli import main, parse_sweep_args
from harness.core.store import RunDir
from harness.experiments.sweep import Cell, expand_grid

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "latency"
SWEEP = [f"experiment={EXPERIMENT}", "submission=[adamw,nadamw]", "workload=[mnist1d_mlp,mnist1d_cnn,digits_cnn,markov_lm,teacher_student]",
         "ruleset.num_studies=5", "ruleset.num_trials=20", "launcher=inline"]
BASELINE = "python -c pass"
GOALS = {"pacer --help": 1.0, "pacer status": 2.0}
ERROR = "Traceback (most recent call last):\n  ...\nFloatingPointError: the loss is nan at step 120"


def generate(root: Path) -> int:
    """The dry sweep's manifest and the cells' run records under `root/results`; returns the
    number of cells."""
    args = [f"results_root={root / 'results'}", *SWEEP]
    with redirect_stdout(io.StringIO()):
        if main(["sweep", *args, "--dry"]) != 0:
            raise SystemExit("the dry sweep failed (its error is above)")
    parsed = parse_sweep_args(args)
    cells = expand_grid(parsed.overrides, parsed.submissions, parsed.workloads)
    for number, cell in enumerate(cells):
        if status := record_status(number):
            write_record(root / "results", cell, status)
    (root / "GENERATED").write_text(json.dumps({"cells": len(cells)}))
    return len(cells)


def record_status(number: int) -> str | None:
    """The status of the run record of the grid's cell `number`: one in 50 an error, one in 50
    none (the cell never started), the others finished."""
    return {0: "error", 1: None}.get(number % 50, ("reached", "budget_exhausted")[number % 2])


def write_record(results: Path, cell: Cell, status: str) -> None:
    """The run record a cell's job leaves, with the fields status and scoring read."""
    cfg = cell.cfg
    record = {"schema": 1, "experiment": cfg["experiment"], "ruleset": cfg["ruleset"]["name"], "submission": cfg["submission"]["name"],
              "workload": cfg["workload"]["name"], "base_workload": cfg["workload"]["name"], "variant": None, "study": cfg["study"], "trial": cfg["trial"],
              "seed": cfg["seed"], "status": status, "hyperparameters": cfg["hparams"], "config": cfg,
              "target": {"metric": "accuracy", "direction": "max", "validation": 0.9, "test": 0.88},
              "budget": {"max_runtime_sec": 120.0, "eval_period_sec": 5.0, "step_hint": 1000},
              "fingerprint": {"id": "bench", "cpu": "synthetic"}, "started_at": "2026-12-01T00:00:00+00:00", "finished_at": "2026-12-01T00:02:00+00:00"}
    if status == "error":
        record["error"] = ERROR
    run = RunDir(results / cell.run_dir)
    run.prepare(results, resume=False, overwrite=True)
    run.write_run(record, durable=False)


def commands() -> dict[str, list[str]]:
    """Label -> command line, the baseline first."""
    pacer = [sys.executable, "-m", "harness"]
    return {BASELINE: [sys.executable, "-c", "pass"], "pacer --help": [*pacer, "--help"], "pacer status": [*pacer, "status", f"experiment={EXPERIMENT}"]}


def run_once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one run of `command` to its end, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.stdout


def check_status_output(out: str, cells: int) -> None:
    """Stop unless status read the whole sweep (a wrong folder would time an error message)."""
    if not out.startswith(f"experiment {EXPERIMENT}: {cells} runs: "):
        raise SystemExit(f"pacer status did not read the {cells}-cell sweep; it printed: {out[:500]!r}")


def time_rounds(root: Path, repeats: int, cells: int) -> dict[str, list[float]]:
    """Each command's wall seconds over `repeats` rounds, after one untimed run of each."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    lines = commands()
    untimed = {label: run_once(command, root, env)[1] for label, command in lines.items()}
    check_status_output(untimed["pacer status"], cells)
    seconds: dict[str, list[float]] = {label: [] for label in lines}
    for _ in range(repeats):
        for label, command in lines.items():
            seconds[label].append(run_once(command, root, env)[0])
    return seconds


def report(seconds: dict[str, list[float]]) -> None:
    """Each command's median, range and (but the baseline's) ratio to the baseline and goal."""
    baseline = statistics.median(seconds[BASELINE])
    for label, values in seconds.items():
        median = statistics.median(values)
        ratio = f"  {median / baseline:5.1f}x {BASELINE}; goal < {GOALS[label]:.0f} s" if label in GOALS else ""
        print(f"{label:<16} median {median:6.3f} s (min {min(values):.3f}, max {max(values):.3f}){ratio}")


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "pacer_cli_latency")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (each runs every command once)")
    opts = parser.parse_args()
    if (opts.root / "GENERATED").exists():
        cells = json.loads((opts.root / "GENERATED").read_text())["cells"]
    else:
        start = time.perf_counter()
        cells = generate(opts.root)
        print(f"generated a {cells:,}-cell sweep under {opts.root} in {time.perf_counter() - start:.1f} s")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    seconds = time_rounds(opts.root, opts.repeats, cells)
    print(f"load average after:  {os.getloadavg()[0]:.2f}; {opts.repeats} rounds, status of {cells:,} cells")
    report(seconds)


if __name__ == "__main__":
    main_benchmark()
