"""The small tuning study that picks a submission's self-tuning default point.

    python -m harness.default_study NAME [NAME ...] [--trials 8] [--max-steps 1000] [--budget 30]

For each submission: the first `trials - 1` scrambled-Halton points of its search space
(`harness.search.study_points`, seed 0, study 0; values rounded to 3 significant digits) plus
its current default, each run once on every study workload (seed 0, an eval every 100 steps,
at most `max_steps` steps and, as a guard, `budget` seconds of submission time). The chosen
point reaches the validation target on the most workloads, then needs the fewest mean steps
to it, then has the best mean validation metric. Steps, not seconds, rank the points: on a
shared CPU the seconds vary with the load, while one submission's cost per step does not
depend much on its hyperparameters (times to target are recorded too). The record goes to docs/tuning/<name>.json and the point,
with a `provenance:` line, into the `default:` block that ends configs/submission/<name>.yaml.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from harness.hparams import Range, SearchSpace, Value, resolve
from harness.runner import Runner, RunSettings
from harness.search import study_points
from harness.spec import Workload
from harness.submissions import LoadedSubmission, load_submission
from harness.workloads import CONFIG_DIR, build_workload, workload_config

STUDY_WORKLOADS = (("mnist1d_mlp", None), ("mnist1d_mlp", "gelu"))
"""The workloads this branch has; the CPU suite's own workloads join when it lands."""
TUNING_DIR = Path(__file__).resolve().parent.parent / "docs" / "tuning"
EVAL_EVERY_STEPS = 100


def rounded_point(space: SearchSpace, point: dict[str, Value]) -> dict[str, Value]:
    """Round range values to 3 significant digits (readable defaults), staying in range."""
    out = {}
    for name, value in point.items():
        param = space.params[name]
        if isinstance(param, Range):
            value = min(max(float(f"{value:.3g}"), param.min), param.max)
        out[name] = value
    return out


def run_trial(workload: Workload, submission: LoadedSubmission, point: dict[str, Value], max_steps: int, budget: float) -> dict[str, object]:
    hyperparameters = resolve(submission.search_space, submission.default, point, f"submission {submission.name}")
    settings = RunSettings(seed=0, max_steps=max_steps, eval_every_steps=EVAL_EVERY_STEPS, max_runtime_sec=budget)
    outcome = Runner(workload, submission.impl, hyperparameters, settings).run()
    metric = f"validation/{workload.target_metric_name}"
    values = [row[metric] for row in outcome.evals if math.isfinite(row.get(metric, math.nan))]
    best = (max if workload.target_metric_direction.value == "max" else min)(values) if values else None
    return {
        "status": outcome.status,
        "time_to_target": outcome.time_to_target["validation"],
        "steps_to_target": outcome.steps_to_target["validation"],
        "best_validation": best,
        "steps": outcome.global_step,
        "error": outcome.error.strip().splitlines()[-1] if outcome.error else None,
    }


def trial_key(trial: dict[str, object]) -> tuple[float, float, float]:
    """Sort key: more workloads reached, then fewer steps to target, then better validation metric."""
    results = list(trial["results"].values())
    steps = [r["steps_to_target"] for r in results]
    reached = [s for s in steps if s is not None]
    mean_steps = sum(reached) / len(reached) if len(reached) == len(steps) else math.inf
    best = [r["best_validation"] if r["best_validation"] is not None else -math.inf for r in results]
    return (-len(reached), mean_steps, -sum(best) / len(best))


def study(name: str, trials: int, max_steps: int, budget: float, log) -> dict[str, object]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml"))
    submission = load_submission(cfg)
    space = submission.search_space
    points = [("halton", rounded_point(space, p)) for p in study_points(space, trials - 1, seed=0, study=0)]
    points.append(("prior_default", dict(submission.default)))
    workloads = {(w if v is None else f"{w}_{v}"): build_workload(workload_config(w), v, "cpu") for w, v in STUDY_WORKLOADS}
    records = []
    for index, (source, point) in enumerate(points):
        results = {}
        for workload_name, workload in workloads.items():
            results[workload_name] = run_trial(workload, submission, point, max_steps, budget)
            log(f"{name} trial {index} ({source}) on {workload_name}: {json.dumps(results[workload_name])}")
        records.append({"trial": index, "source": source, "hyperparameters": point, "results": results})
    chosen = min(records, key=trial_key)
    return {
        "submission": name,
        "method": f"{trials - 1} scrambled-Halton points (seed 0, study 0) + the prior default, one seed each",
        "workloads": list(workloads),
        "settings": {"seed": 0, "max_steps": max_steps, "eval_every_steps": EVAL_EVERY_STEPS, "max_runtime_sec": budget, "torch_threads": torch.get_num_threads()},
        "rule": "most workloads reaching the validation target, then fewest mean steps to target, then best mean validation metric",
        "chosen_trial": chosen["trial"],
        "default": chosen["hyperparameters"],
        "trials": records,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_default(name: str, record: dict[str, object]) -> None:
    """Replace the `default:` block that ends the submission's YAML with the chosen point."""
    path = CONFIG_DIR / "submission" / f"{name}.yaml"
    text = path.read_text()
    head = text[:text.index("\ndefault:\n") + 1]
    lines = ["default:"] + [f"  {k}: {_yaml_value(v)}" for k, v in record["default"].items()]
    chosen = record["trials"][record["chosen_trial"]]
    reached = sum(r["time_to_target"] is not None for r in chosen["results"].values())
    lines += [
        "provenance:",
        f"  study: docs/tuning/{name}.json",
        f"  summary: trial {record['chosen_trial']} ({chosen['source']}) of {len(record['trials'])}; reached the target on {reached} of {len(chosen['results'])} study workloads",
    ]
    path.write_text(head + "\n".join(lines) + "\n")


def _yaml_value(value: Value) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text if "e" not in text else f"{value:.6e}"
    return json.dumps(value) if isinstance(value, str) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=30.0, help="guard: seconds of submission time per trial")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the study shares a small machine; one thread avoids oversubscription

    def log(line: str) -> None:
        print(line, flush=True)

    TUNING_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        record = study(name, args.trials, args.max_steps, args.budget, log)
        (TUNING_DIR / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        write_default(name, record)
        log(f"{name}: chose trial {record['chosen_trial']}: {record['default']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
