"""Run records for scoring tests, written through harness.core.store so the format stays one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.core.store import RunDir, run_path

TARGET = 0.9
FINGERPRINT = {"id": "fp-test", "cpu": "test cpu", "torch": "2.x", "pacer": "0.1.0", "git_commit": "abc123"}


def write_run(root: Path, submission: str, workload: str, study: int, trial: int, reach_at: float | None, *,
              ruleset: str = "external", evals: int = 4, step_time: float = 1.0, base_workload: str | None = None,
              variant: str | None = None, fingerprint: dict[str, object] | None = None, target: float = TARGET,
              experiment: str = "exp", hyperparameters: dict[str, object] | None = None, budget: float = 100.0,
              clock: str | None = None, contended: bool | None = None, source: str | None = None) -> RunDir:
    """One run whose validation accuracy first meets `target` at its last eval, at submission
    time `reach_at` (None: never, `evals` evals `step_time` apart). Steps are 100 per second.
    `clock` / `contended` add the record's `clock` / `contention` block (None: an older record without it)."""
    times = [reach_at * j / evals for j in range(1, evals + 1)] if reach_at is not None else [step_time * j for j in range(1, evals + 1)]
    rows = []
    for k, t in enumerate(times, 1):
        acc = target + 0.01 if reach_at is not None and k == evals else target * 0.5 * k / evals
        rows.append({"global_step": round(100 * t), "examples_seen": 3200 * round(t), "accumulated_submission_time": t, "accumulated_eval_time": 0.1 * k,
                     "accumulated_logging_time": 0.0, "total_duration": 1.2 * t, "train/loss": 1.0 / k, "validation/loss": 1.0 / k,
                     "validation/accuracy": acc, "test/accuracy": acc - 0.005, "validation/num_examples": 100})
    run = RunDir(run_path(root, experiment, ruleset, submission, workload, study, trial))
    run.prepare(root, resume=False, overwrite=True)
    run.write_evals(rows)
    record: dict[str, object] = {
        "schema": 1, "experiment": experiment, "ruleset": ruleset, "submission": submission, "workload": workload,
        "base_workload": base_workload or workload, "variant": variant, "study": study, "trial": trial, "seed": trial,
        "status": "reached" if reach_at is not None else "budget_exhausted", "hyperparameters": hyperparameters or {"learning_rate": 0.001 * (trial + 1)},
        "target": {"metric": "accuracy", "direction": "max", "validation": target, "test": target - 0.01},
        "budget": {"max_runtime_sec": budget, "eval_period_sec": step_time, "step_hint": 100},
        "time_to_target": {"validation": reach_at, "test": None}, "fingerprint": fingerprint or FINGERPRINT,
        "started_at": "2026-11-27T00:00:00+00:00", "finished_at": "2026-11-27T00:01:00+00:00",
    }
    if source is not None:
        record["source"] = source
    if clock is not None:
        record["clock"] = {"kind": clock, "unit": "reference s" if clock == "normalized" else "s"}
    if contended is not None:
        reasons = ["load average 7.9 on 2 cores", "run-queue wait 35% of CPU time"] if contended else []
        record["contention"] = {"contended": contended, "reasons": reasons, "load_average": [7.9, 8.3] if contended else [0.4, 0.5],
                                "run_queue_wait_fraction": 0.35 if contended else 0.01, "reference_spread": None}
    run.write_run(record)
    return run


def write_table(root: Path, times: dict[str, dict[str, Sequence[Sequence[float | None]]]], **kwargs) -> None:
    """times[submission][workload] = per study, per trial: the time the target is reached (None: miss)."""
    for submission, per_workload in times.items():
        for workload, studies in per_workload.items():
            for study, trials in enumerate(studies):
                for trial, reach in enumerate(trials):
                    write_run(root, submission, workload, study, trial, reach, **kwargs)
