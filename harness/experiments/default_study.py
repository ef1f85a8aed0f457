"""The small tuning study that picks a submission's self-tuning default point.

    python -m harness.experiments.default_study NAME [NAME ...] [--trials 8] [--workloads a,b] [--workers 2]
    python -m harness.experiments.default_study NAME [NAME ...] --table    # the recorded choices, as Markdown

Bad input (an unknown submission or workload, `--table` without a record) is one error line and
exit status 2, before any run.

For each submission, the candidate points are: the first `trials - 1` scrambled-Halton points of
its search space (`harness.plugins.search.study_points`, seed 0, study 0; values rounded to 3
significant digits), its current default, and every configuration that `pacer calibrate` found
best on a study workload (`best` in its records/calibration/<workload>.json) that is a point of this
space (the same hyperparameter names, every value inside it); duplicates run once. Each runs
once on every study workload (CPU-suite workloads, default `STUDY_WORKLOADS`) as the
benchmark would run it, but by steps: seed 0, an eval every `calibration.eval_every_steps`, at
most 4/3 x the workload's `step_hint` steps (the steps the budget buys at the calibration's
pace) and, as a guard against runaway runs, ten times its time budget, stopping at the target.
The chosen point reaches the validation target on the most workloads, then needs the fewest
mean steps to it (as fractions of each workload's step cap), then diverges on the fewest, then
has the best mean rank of its best validation metric across the workloads. Steps, not seconds,
rank the points: on a shared CPU the seconds vary with the load, while one submission's cost
per step does not depend much on its hyperparameters (times to target are recorded too).
`--workers N` runs the trials in N one-thread processes (results are step-based). A result already in the
submission's record for the same point, workload and settings is reused, so a study can be
extended (`--trials 16` after 8: the Halton points are a prefix) at the cost of the new points
only; a run the old time guard stopped is reused only under the same guard. The record goes to
docs/tuning/<name>.json and the point, with a `provenance:` line, into the `default:` block
that ends configs/submission/<name>.yaml.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence

import torch
from omegaconf import OmegaConf

from harness.core.errors import PacerUserError
from harness.core.runner import Runner, RunSettings
from harness.core.store import atomic_write
from harness.experiments.calibration_records import provenance_of, record_path
from harness.experiments.parallel import map_in_processes
from harness.plugins.hparams import Range, SearchSpace, Value, resolve
from harness.plugins.search import study_points
from harness.plugins.submissions import check_submission_names, load_submission
from harness.plugins.workloads import CONFIG_DIR, build_workload, workload_config

STUDY_WORKLOADS = ("mnist1d_cnn", "teacher_student")
"""Two CPU-suite workloads unlike each other: a convolutional classifier and an
ill-conditioned regression."""
TUNING_DIR = CONFIG_DIR.parent / "docs" / "tuning"
STEP_FACTOR = 4 / 3
GUARD_FACTOR = 10.0
"""The time guard only stops runaway runs; the step cap ends a study run. Budgets are timed with two
threads, study workers run one thread each (about 2x slower per step), and submissions differ up to
about 6x in cost per step (Shampoo against NAdamW on teacher_student), so a smaller factor would
cut ordinary runs of the costlier submissions and make the study time-based for them."""


def rounded_point(space: SearchSpace, point: dict[str, Value]) -> dict[str, Value]:
    """Round range values to 3 significant digits (readable defaults), staying in range."""
    out = {}
    for name, value in point.items():
        param = space.params[name]
        if isinstance(param, Range):
            value = min(max(float(f"{value:.3g}"), param.min), param.max)
        out[name] = value
    return out


def study_settings(workload_name: str) -> RunSettings:
    """How a study trial runs on `workload_name`: by steps, as far as its budget would go."""
    cfg = workload_config(workload_name)
    step_hint = int(cfg["step_hint"])
    eval_every = int((cfg.get("calibration") or {}).get("eval_every_steps") or max(step_hint // 10, 1))
    return RunSettings(seed=0, max_steps=math.ceil(STEP_FACTOR * step_hint), eval_every_steps=eval_every,
                       max_runtime_sec=GUARD_FACTOR * float(cfg["max_runtime_sec"]))


def run_trial(job: tuple[str, dict[str, Value], str]) -> dict[str, object]:
    """One study run: (submission name, point, workload name) -> its outcome (module-level,
    so that worker processes can run it)."""
    name, point, workload_name = job
    submission = load_submission(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml")))
    workload = build_workload(workload_config(workload_name), None, "cpu")
    hyperparameters = resolve(submission.search_space, submission.default, point, f"submission {submission.name}")
    outcome = Runner(workload, submission.impl, hyperparameters, study_settings(workload_name)).run()
    metric = f"validation/{workload.target_metric_name}"
    best = workload.target_metric_direction.best(row.get(metric, math.nan) for row in outcome.evals)
    return {
        "status": outcome.status,
        "time_to_target": outcome.time_to_target["validation"],
        "steps_to_target": outcome.steps_to_target["validation"],
        "best_validation": best,
        "direction": workload.target_metric_direction.value,
        "steps": outcome.global_step,
        "error": outcome.error.strip().splitlines()[-1] if outcome.error else None,
    }


def ranked(records: Sequence[dict[str, object]], step_caps: dict[str, int]) -> list[dict[str, object]]:
    """Trials best first: more workloads reached, then fewer mean steps to target (each as a
    fraction of its workload's step cap, so that a long workload does not outweigh a short one),
    then fewer failed runs (diverged, or no finite metric), then a better mean rank of the best
    validation metric across workloads (ranks, because metrics of different workloads have
    different scales and directions)."""
    workloads = list(records[0]["results"])

    def failed(result: dict[str, object]) -> bool:
        return result["best_validation"] is None or result.get("status") == "diverged"

    def goodness(result: dict[str, object]) -> float:
        best = result["best_validation"]
        if failed(result):
            return -math.inf
        return float(best) if result["direction"] == "max" else -float(best)

    metric_rank = {id(r): 0.0 for r in records}
    for workload in workloads:
        order = sorted(records, key=lambda r: -goodness(r["results"][workload]))
        for position, record in enumerate(order):
            metric_rank[id(record)] += position / len(workloads)

    def key(record: dict[str, object]) -> tuple[float, float, int, float]:
        results = record["results"]
        reached = [r["steps_to_target"] / step_caps[w] for w, r in results.items() if r["steps_to_target"] is not None]
        mean_steps = sum(reached) / len(reached) if len(reached) == len(results) else math.inf
        return (-len(reached), mean_steps, sum(map(failed, results.values())), metric_rank[id(record)])

    return sorted(records, key=key)


def calibration_points(space: SearchSpace, workloads: Sequence[str]) -> list[tuple[str, dict[str, Value]]]:
    """The configurations `pacer calibrate` found best on `workloads` that are points of `space`."""
    points = []
    for workload in workloads:
        best = (provenance_of(record_path(workload), None) or {}).get("best") or {}
        point = dict(best.get("hyperparameters") or {})
        if point and set(point) == set(space.params) and _inside(space, point):
            points.append((f"calibration_best:{workload}/{best['submission']}", point))
    return points


def _inside(space: SearchSpace, point: dict[str, Value]) -> bool:
    try:
        space.check(point, "candidate")
    except PacerUserError:
        return False
    return True


def candidate_points(space: SearchSpace, default: dict[str, Value], trials: int, workloads: Sequence[str]) -> list[tuple[str, dict[str, Value]]]:
    """(source, point) for every distinct candidate, in order: Halton, prior default, calibration
    bests; a point that comes from several sources names them all ("prior_default = calibration_best:...")."""
    candidates = [("halton", rounded_point(space, p)) for p in study_points(space, trials - 1, seed=0, study=0)]
    candidates += [("prior_default", dict(default))] + calibration_points(space, workloads)
    sources: dict[str, list[str]] = {}
    points: dict[str, dict[str, Value]] = {}
    for source, point in candidates:
        key = _point_key(point)
        points.setdefault(key, point)
        if source not in sources.setdefault(key, []):
            sources[key].append(source)
    return [(" = ".join(sources[key]), point) for key, point in points.items()]


def _point_key(point: dict[str, Value]) -> str:
    return json.dumps(point, sort_keys=True)


def settings_record(workloads: Sequence[str], workers: int) -> dict[str, object]:
    return {w: {"max_steps": s.max_steps, "eval_every_steps": s.eval_every_steps, "guard_sec": round(s.max_runtime_sec, 3)} for w, s in ((w, study_settings(w)) for w in workloads)} \
        | {"seed": 0, "torch_threads": 1 if workers > 1 else torch.get_num_threads()}


def reusable_results(previous: dict[str, object] | None, settings: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    """(point key, workload) -> result, from a previous record of this study, for every workload
    run with the same steps and evals, and a time guard that cannot have cut it differently, by
    workers with the same number of torch threads (which can change a run's numerics)."""
    recorded = (previous or {}).get("settings") or {}
    if not previous or recorded.get("torch_threads") != settings["torch_threads"]:
        return {}
    reusable = {}
    for trial in previous.get("trials", []):
        for workload, result in trial["results"].items():
            old, new = recorded.get(workload), settings.get(workload)
            if not old or not new or old["max_steps"] != new["max_steps"] or old["eval_every_steps"] != new["eval_every_steps"]:
                continue
            if "direction" not in result:  # recorded before results carried their metric's direction
                continue
            guard_cut_it = result["status"] == "budget_exhausted"
            same_guard = math.isclose(old["guard_sec"], new["guard_sec"], rel_tol=1e-6)
            if same_guard or (not guard_cut_it and new["guard_sec"] >= old["guard_sec"]):
                reusable[(_point_key(trial["hyperparameters"]), workload)] = result
    return reusable


def study(name: str, trials: int, workloads: Sequence[str], workers: int, log, previous: dict[str, object] | None = None) -> dict[str, object]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml"))
    submission = load_submission(cfg)
    points = candidate_points(submission.search_space, dict(submission.default), trials, workloads)
    settings = settings_record(workloads, workers)
    known = reusable_results(previous, settings)
    jobs = [(name, point, workload) for _, point in points for workload in workloads if (_point_key(point), workload) not in known]
    log(f"{name}: {len(points)} points x {len(workloads)} workloads, {len(jobs)} runs to do, {len(points) * len(workloads) - len(jobs)} reused")
    fresh = dict(zip(((_point_key(p), w) for _, p, w in jobs), map_in_processes(run_trial, jobs, workers), strict=True))
    records = []
    for index, (source, point) in enumerate(points):
        results = {workload: known.get((_point_key(point), workload)) or fresh[(_point_key(point), workload)] for workload in workloads}
        for workload, result in results.items():
            log(f"{name} trial {index} ({source}) on {workload}: {json.dumps(result)}")
        records.append({"trial": index, "source": source, "hyperparameters": point, "results": results})
    chosen = ranked(records, {workload: settings[workload]["max_steps"] for workload in workloads})[0]
    return {
        "submission": name,
        "method": f"{trials - 1} scrambled-Halton points (seed 0, study 0), the prior default and the calibration bests that are points of the space; one seed each",
        "workloads": list(workloads),
        "settings": settings,
        "rule": "most workloads reaching the validation target, then fewest mean steps to target as fractions of the step caps, then fewest diverged runs, then best mean rank of the best validation metric",
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
    atomic_write(path, head + "\n".join(lines) + "\n")  # calibrations may be reading it


def table(records: Sequence[dict[str, object]]) -> str:
    """A Markdown table of recorded studies: the chosen point's best validation metric and the
    step at which it reached the target on each workload (of any record; "-" where a study did
    not run it), and how many study runs reached one."""
    workloads = list(dict.fromkeys(w for record in records for w in record["workloads"]))
    header = ["submission", "chosen trial (source)"] + [f"{w}: best val. (target)" for w in workloads] + ["runs reaching a target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        chosen = record["trials"][record["chosen_trial"]]
        cells = [f"`{record['submission']}`", f"{record['chosen_trial']} ({chosen['source']})"]
        for workload in workloads:
            result = chosen["results"].get(workload)
            if result is None:
                cells.append("-")
                continue
            best = "diverged" if result["best_validation"] is None else f"{result['best_validation']:.4g}"
            cells.append(best + (f", reached at step {result['steps_to_target']}" if result["steps_to_target"] is not None else "")
                         + f" ({workload_config(workload)['validation_target']:.4g})")
        runs = [r for t in record["trials"] for r in t["results"].values()]
        cells.append(f"{sum(r['steps_to_target'] is not None for r in runs)} of {len(runs)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _yaml_value(value: Value) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text if "e" not in text else f"{value:.6e}"
    return json.dumps(value) if isinstance(value, str) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workloads", default=",".join(STUDY_WORKLOADS), help="comma-separated CPU-suite workloads")
    parser.add_argument("--workers", type=int, default=1, help="parallel one-thread processes")
    parser.add_argument("--table", action="store_true", help="print the recorded studies of NAMEs as a Markdown table; run nothing")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PacerUserError as e:
        print(f"default_study: error: {e}", file=sys.stderr)
        return e.exit_code


def run(args: argparse.Namespace) -> int:
    check_submission_names(args.names)
    if args.table:
        missing = [name for name in args.names if not (TUNING_DIR / f"{name}.json").exists()]
        if missing:
            raise PacerUserError(f"no recorded study for {', '.join(missing)} in {TUNING_DIR}")
        print(table([json.loads((TUNING_DIR / f"{name}.json").read_text()) for name in args.names]))
        return 0
    workloads = [w for w in args.workloads.split(",") if w]
    for workload in workloads:
        workload_config(workload)  # an unknown name fails here, before any run

    def log(line: str) -> None:
        print(line, flush=True)

    TUNING_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        path = TUNING_DIR / f"{name}.json"
        previous = json.loads(path.read_text()) if path.exists() else None
        record = study(name, args.trials, workloads, args.workers, log, previous)
        atomic_write(path, json.dumps(record, indent=1) + "\n")
        write_default(name, record)
        log(f"{name}: chose trial {record['chosen_trial']}: {record['default']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
