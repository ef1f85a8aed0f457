"""The CPU suite's speed goals, measured: NAdamW at its default point on every base workload
(one run each: time and steps to target, against the budget, and the suite's wall time), the
noise of time-to-target (one workload, one seed, several runs), and every submission's default
point on one workload.

    python benchmarks/cpu_suite.py                                  # the whole suite, one run each
    python benchmarks/cpu_suite.py --noise mnist1d_cnn --repeats 5  # time-to-target noise (--noise all: every workload)
    python benchmarks/cpu_suite.py --submissions all --workload mnist1d_cnn

A default point is what the self-tuning ruleset runs, so runs are self-tuning runs by default:
the budget is 1.5 x the workload's calibrated one (AlgoPerf's self-tuning multiplier);
`--ruleset external` gives them 1 x, and `--cap S` sets S seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

from omegaconf import OmegaConf

from harness.core.errors import PacerUserError
from harness.core.spec import MetricDirection
from harness.core.store import RunDir, run_path
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.submissions import check_submission_names, submission_names

SUITE = ("mnist1d_mlp", "mnist1d_cnn", "digits_cnn", "teacher_student", "markov_lm")


def one_run(workload: str, experiment: str, trial: int, args: argparse.Namespace, submission: str = "nadamw") -> dict[str, object]:
    """`submission`'s default point on `workload` with seed 0, under `args.ruleset` (budget:
    `args.cap` seconds, or the ruleset's multiple of the calibrated one)."""
    cap = [f"max_runtime_sec={args.cap}"] if args.cap else []
    cfg = compose([f"workload={workload}", f"submission={submission}", f"ruleset={args.ruleset}", "seed=0", f"experiment={experiment}",
                          f"trial={trial}", f"results_root={args.results_root}", "overwrite=true", "quiet=true", *cap])
    return run_job(OmegaConf.to_container(cfg, resolve=True))


def suite(args: argparse.Namespace) -> None:
    started = time.monotonic()
    print(f"NAdamW default, seed 0, ruleset {args.ruleset}")
    print(f"{'workload':<18}{'status':<18}{'time to target':>16}{'steps':>8}{'budget':>9}  best validation (target)")
    for workload in SUITE:
        record = one_run(workload, "bench-suite", 0, args)
        ttt = record["time_to_target"]["validation"]
        best = best_validation(record, args.results_root)
        print(f"{workload:<18}{record['status']:<18}{'-' if ttt is None else f'{ttt:.1f} s':>16}{str(record['steps_to_target']['validation'] or '-'):>8}"
              f"{record['budget']['max_runtime_sec']:>8.1f}s  {'-' if best is None else f'{best:.4g}'} ({record['target']['validation']})")
    print(f"suite wall time (data, setup, training, evals): {time.monotonic() - started:.0f} s")


def noise(workload: str, repeats: int, args: argparse.Namespace) -> None:
    """`repeats` runs of one seed: the spread of the time to target (in the workload's clock,
    and in wall seconds) with the steps, which must not move on a step-scheduled workload."""
    times, raw, steps = [], [], []
    for trial in range(repeats):
        record = one_run(workload, "bench-noise", trial, args)
        times.append(record["time_to_target"]["validation"])
        raw.append((record.get("raw_time_to_target") or {}).get("validation"))
        steps.append(record["steps_to_target"]["validation"])
    unit = (record.get("clock") or {}).get("unit", "s")
    print(f"{workload}, NAdamW default, seed 0, ruleset {args.ruleset}, {repeats} runs: time to target ({unit}) {['-' if t is None else round(t, 2) for t in times]}")
    for label, values in ((unit, times), ("wall s", raw)):
        reached = sorted(t for t in values if t is not None)
        if reached:
            print(f"  {label:<12} min {reached[0]:.2f}  median {statistics.median(reached):.2f}  max {reached[-1]:.2f}  (max/min {reached[-1] / reached[0]:.2f})")
    print(f"  steps to target {steps}; load average {os.getloadavg()[0]:.2f}")


def best_validation(record: dict[str, object], results_root: str) -> float | None:
    """The run's best validation value of its target metric, in the metric's direction."""
    target = record["target"]
    folder = run_path(Path(results_root), record["experiment"], record["ruleset"], record["submission"], record["workload"], record["study"], record["trial"])
    key = f"validation/{target['metric']}"
    return MetricDirection(target["direction"]).best(row.get(key, math.nan) for row in RunDir(folder).read_evals())


def submissions(names: list[str], workload: str, args: argparse.Namespace) -> None:
    print(f"| submission | reached the target | time to target | steps | best validation | budget |  (`{workload}`, seed 0, ruleset {args.ruleset})")
    print("|---|---|---|---|---|---|")
    for name in names:
        record = one_run(workload, "bench-submissions", 0, args, submission=name)
        ttt = record["time_to_target"]["validation"]
        best = best_validation(record, args.results_root)
        print(f"| {name} | {'yes' if ttt is not None else 'no (' + record['status'] + ')'} | {'-' if ttt is None else f'{ttt:.1f} s'} "
              f"| {record['steps_to_target']['validation'] or '-'} | {'-' if best is None else f'{best:.4g}'} (target {record['target']['validation']:.4g}) "
              f"| {record['budget']['max_runtime_sec']:.1f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", metavar="WORKLOAD|all", help="measure time-to-target noise on this workload (all: every base workload) instead")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results-root", default="results")
    parser.add_argument("--submissions", metavar="A,B|all", help="run these submissions' default points on --workload instead")
    parser.add_argument("--workload", default="mnist1d_cnn")
    parser.add_argument("--ruleset", choices=("self", "external"), default="self", help="self: 1.5 x the calibrated budget (default); external: 1 x")
    parser.add_argument("--cap", type=float, default=None, help="budget for each run in seconds (overrides the ruleset's)")
    args = parser.parse_args()
    if args.submissions:
        names = submission_names() if args.submissions == "all" else args.submissions.split(",")
        try:
            check_submission_names(names)
        except PacerUserError as e:
            parser.error(str(e))
        submissions(names, args.workload, args)
    elif args.noise:
        for workload in SUITE if args.noise == "all" else [args.noise]:
            noise(workload, args.repeats, args)
    else:
        suite(args)


if __name__ == "__main__":
    main()
