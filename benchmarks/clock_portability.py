"""Does the normalized clock give the same time to target on a quiet and a busy machine?

One CPU-suite workload, NAdamW's default point, several seeds, under four conditions that this
script sets up and tears down itself:

    quiet          the runs one at a time, nothing else started
    competitor     one competing CPU-bound process (a matrix-product loop on torch's default
                   threads, like a second training job)
    two_runs       two runs at once (each seed beside a twin run of the same seed)
    oversubscribed three competing one-thread processes: twice as many runnable threads as cores

Per condition: the median raw (wall) and normalized time to target, each as a ratio to the
quiet condition's, the steps to target of every seed (they must not change: evals fall on
steps), how many runs were flagged contended, and the median run-queue wait. Seeds that miss
the target have no time to target, so the same is also shown for the time to a fixed eval
step (`--at-step`), which every seed passes.

    python benchmarks/clock_portability.py                       # mnist1d_cnn, 5 seeds
    python benchmarks/clock_portability.py --workload teacher_student --seeds 3

Goals (issue: a load-robust clock): normalized within +/-10% of quiet under `competitor` and
`two_runs`; raw under `competitor` at least 1.5x quiet (so the condition bites); identical
steps to target everywhere; every `oversubscribed` run flagged contended. The machine's load
before the first condition is printed: a figure taken on a machine that was already busy is
not a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from harness.core.store import RunDir, run_path
from harness.experiments.job import run_job
from harness.experiments.parallel import map_in_processes
from harness.experiments.run_config import compose

CONDITIONS = ("quiet", "competitor", "two_runs", "oversubscribed")
COMPETITOR = (
    "import sys, torch\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "a = torch.randn(384, 384)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


@contextlib.contextmanager
def competitors(n: int, threads: int) -> Iterator[None]:
    """`n` CPU-bound processes of `threads` torch threads each, for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", COMPETITOR, str(threads)]) for _ in range(n)]
    try:
        time.sleep(2.0 if n else 0.0)  # let them start (torch import) before the runs do
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def run_config(args: argparse.Namespace, condition: str, seed: int, twin: bool = False) -> dict[str, object]:
    cfg = compose([f"workload={args.workload}", "submission=nadamw", f"seed={seed}", f"results_root={args.results_root}",
                          f"experiment=clock-{condition}{'-twin' if twin else ''}", f"trial={seed}", "overwrite=true", "quiet=true",
                          "checkpoint_every_sec=0", f"max_runtime_sec={args.max_runtime}", f"max_steps={args.max_steps}"])
    return OmegaConf.to_container(cfg, resolve=True)


def one_run(cfg: dict[str, object], at_step: int) -> dict[str, object]:
    record = run_job(cfg)
    folder = run_path(cfg["results_root"], str(cfg["experiment"]), record["ruleset"], record["submission"], record["workload"], record["study"], record["trial"])
    at = next((row for row in RunDir(folder).read_evals() if row["global_step"] == at_step), {})
    return {"at_step": at.get("accumulated_submission_time"), "at_step_raw": at.get("accumulated_raw_submission_time"),"experiment": record["experiment"], "status": record["status"], "time": record["time_to_target"]["validation"],
            "raw": record["raw_time_to_target"]["validation"], "steps": record["steps_to_target"]["validation"],
            "contended": record["contention"]["contended"], "wait": record["contention"]["run_queue_wait_fraction"],
            "spread": record["contention"]["reference_spread"]}


def run_condition(args: argparse.Namespace, condition: str) -> list[dict[str, object]]:
    seeds = range(args.seeds)
    if condition == "two_runs":
        configs = [cfg for s in seeds for cfg in (run_config(args, condition, s), run_config(args, condition, s, twin=True))]
        results = map_in_processes(functools.partial(one_run, at_step=args.at_step), configs, 2)
        return [r for r in results if not str(r["experiment"]).endswith("-twin")]
    n_competitors, threads = {"quiet": (0, 1), "competitor": (1, os.cpu_count() or 1), "oversubscribed": (3, 1)}[condition]
    with competitors(n_competitors, threads):
        return [one_run(run_config(args, condition, s), args.at_step) for s in seeds]


def median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return statistics.median(finite) if finite else None


def table(results: dict[str, list[dict[str, object]]], at_step: int) -> str:
    """Medians per condition, as ratios to the quiet condition's."""
    columns = (("time", "to target"), ("raw", "raw"), ("at_step", f"to step {at_step}"), ("at_step_raw", "raw"))
    quiet = {key: median([r[key] for r in results["quiet"]]) for key, _ in columns}
    header = "".join(f"{label:>18}" for _, label in columns)
    lines = [f"{'condition':<16}{header}  {'steps to target':<24}{'contended':>10}{'queue wait':>11}"]
    for condition, runs in results.items():
        cells = []
        for key, _ in columns:
            value = median([r[key] for r in runs])
            cells.append("-" if value is None else f"{value:.2f} ({value / quiet[key]:.2f}x)" if quiet[key] else f"{value:.2f}")
        steps = ",".join(str(r["steps"] or "-") for r in runs)
        lines.append(f"{condition:<16}{''.join(f'{c:>18}' for c in cells)}  {steps:<24}{sum(bool(r['contended']) for r in runs):>7}/{len(runs)}"
                     f"{median([r['wait'] for r in runs]):>10.0%}")
    return "\n".join(lines) + "\n(times in reference seconds, raw in wall seconds; ratio to quiet in brackets)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="mnist1d_cnn")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated subset of {', '.join(CONDITIONS)}")
    parser.add_argument("--max-runtime", type=float, default=120.0, help="budget override in reference seconds, so that runs end at the target")
    parser.add_argument("--max-steps", type=int, default=600, help="step cap, for seeds that never reach the target")
    parser.add_argument("--at-step", type=int, default=400, help="an eval step every run passes: its times are compared too")
    parser.add_argument("--results-root", type=Path, default=Path("/tmp/pacer-clock-portability"))
    args = parser.parse_args(argv)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or "quiet" not in conditions:
        parser.error(f"--conditions: unknown {', '.join(unknown)}" if unknown else "--conditions must include quiet (the baseline)")
    print(f"{args.workload}, NAdamW default point, seeds 0-{args.seeds - 1}; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = {}
    for condition in conditions:
        started = time.monotonic()
        results[condition] = run_condition(args, condition)
        print(f"  {condition}: {time.monotonic() - started:.0f} s", flush=True)
    print(table(results, args.at_step))


if __name__ == "__main__":
    main()
