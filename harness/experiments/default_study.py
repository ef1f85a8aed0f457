"""The small tuning study that picks a submission's self-tuning default point.

    python -m harness.experiments.default_study NAME [NAME ...] [--trials 16] [--workloads v1,v2,v3] [--workers 2]
    python -m harness.experiments.default_study NAME [NAME ...] --table    # the recorded choices, as Markdown

The protocol tunes on one setting and is scored on another (Cha & Cho, "Hyperparameters in
Continual Learning: a Reality Check", arXiv 2403.09066: tuning and evaluating on the same
setting overestimates a method): the study runs on variants of the
CPU suite's workloads (default `STUDY_WORKLOADS`), never on a base workload, which the
self-tuning leaderboard scores. Every submission gets the same budget, so that no method is
favoured by a larger search: its first `trials` scrambled-Halton points
(`harness.plugins.search.study_points`, seed 0, study 0; values rounded to 3 significant digits),
on the same workloads with the same seed and budgets. Neither the prior default nor
`pacer calibrate`'s best configurations are candidates: both were chosen on the scored base
workloads.

Each point runs once on every study workload as the self-tuning ruleset would run it: seed 0,
an eval every `eval_every_steps` of the variant, the variant's time budget times the self-tuning
ruleset's `budget_multiplier` on the variant's clock, stopping at the target. The CPU suite's
clock is the normalized one (`harness.core.timer`): times are reference seconds, the same with
one or two torch threads and under load (within about 6%: a NAdamW run on each study workload
with one and with two threads, quiet 2-core VM), so the study's one-thread workers see the
budget the leaderboard's runs see. The chosen point reaches the validation target on the most
workloads, then needs the least mean time to it (as fractions of each workload's budget), then
diverges on the fewest, then has the best mean rank of its best validation metric across the
workloads. Time, not steps, ranks the points: points of one search space can differ in their
cost per step (AdaDAGrad's batch growth, M-FAC's number of stored gradients), which the
leaderboard counts. `--workers N` runs the trials in N one-thread processes. A result already
in the submission's record for the same point, workload and settings is reused, so a study can
be extended (`--trials 16` after 8: the Halton points are a prefix) at the cost of the new
points only. The record goes to records/default_points/<name>.json (written atomically) and
the point, with its `provenance:`, into configs/submission/<name>.yaml through
`harness.experiments.yaml_edit` (every other line of the file kept).

Bad input (an unknown submission or workload, a workload that is not a variant, `--trials`
below 1, `--table` without a record) is one error line and exit status 2, before any run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from harness.core.errors import PacerUserError
from harness.core.runner import Runner, RunSettings
from harness.core.store import atomic_write
from harness.experiments.parallel import map_in_processes
from harness.experiments.run_config import split_workload_id
from harness.experiments.yaml_edit import set_values
from harness.plugins.hparams import Range, SearchSpace, Value, resolve
from harness.plugins.search import study_points
from harness.plugins.submissions import check_submission_names, load_submission
from harness.plugins.workloads import CONFIG_DIR, build_workload, resolve_variant, suite_workloads, workload_config

STUDY_WORKLOADS = ("digits_cnn_large_bn_init", "teacher_student_relu", "markov_lm_post_ln")
"""Three CPU-suite variants, each of a different base workload and unlike each other: a
convolutional classifier whose BatchNorm scales start at 4 (a changed effective learning rate),
an ill-conditioned regression (condition number 1e4, as the base) with a ReLU student, and a
post-LN Transformer language model (post-LN is the placement that needs warmup and a smaller
learning rate). Their self-tuning budgets are 6.3, 20.5 and 11.4 reference seconds. Passed over:
`mnist1d_cnn`'s variants (3,734 steps at 4.6-5.7 ms: 17-21 s of steps alone, before data and
evals), `digits_cnn_silu` (a 1.6 s budget: a few hundred steps of the costlier submissions),
`teacher_student_well_conditioned` (condition 100: not
ill-conditioned) and `markov_lm_relu` (GELU to ReLU: nearly the base)."""
SUBMISSION_DIR = CONFIG_DIR / "submission"
RECORDS_DIR = CONFIG_DIR.parent / "records" / "default_points"
SELF_TUNING_RULESET = CONFIG_DIR / "ruleset" / "self.yaml"


def study_workloads(workload_ids: Sequence[str]) -> list[str]:
    """`workload_ids`, checked: each must be a variant id (`<base>_<variant>`).

    Raises PacerUserError naming the first unknown id, or the first base workload (a base
    workload of the CPU suite is what the leaderboard scores: tuning on it is tuning on the
    test set)."""
    for workload_id in workload_ids:
        base, variant = split_workload_id(workload_id)
        if variant is None:
            scored = "the CPU suite's leaderboard scores it" if base in suite_workloads("cpu") else "the study tunes on variants only"
            variants = ", ".join(f"{base}_{v}" for v in workload_config(base).get("variants") or {}) or "none"
            raise PacerUserError(f"--workloads: {workload_id} is a base workload, not a variant: {scored} (its variants: {variants})")
    return list(workload_ids)


def variant_config(workload_id: str) -> dict[str, object]:
    """The settings of workload id `workload_id`, a variant's own (targets, budget, step_hint,
    eval_every_steps) over its base workload's."""
    base, variant = split_workload_id(workload_id)
    return resolve_variant(workload_config(base), variant)


def rounded_point(space: SearchSpace, point: dict[str, Value]) -> dict[str, Value]:
    """Round range values to 3 significant digits (readable defaults), staying in range."""
    out = {}
    for name, value in point.items():
        param = space.params[name]
        if isinstance(param, Range):
            value = min(max(float(f"{value:.3g}"), param.min), param.max)
        out[name] = value
    return out


def candidate_points(space: SearchSpace, trials: int) -> list[dict[str, Value]]:
    """The `trials` points every submission's study runs: the first `trials` scrambled-Halton
    points of `space` (seed 0, study 0), rounded."""
    return [rounded_point(space, point) for point in study_points(space, trials, seed=0, study=0)]


def study_budget(workload_id: str) -> float:
    """The budget of a study run on `workload_id`, in its clock's seconds: the variant's
    `max_runtime_sec` times the self-tuning ruleset's `budget_multiplier`, as the leaderboard
    that scores the default gives it."""
    multiplier = float(OmegaConf.load(SELF_TUNING_RULESET).get("budget_multiplier", 1.0))
    return float(variant_config(workload_id)["max_runtime_sec"]) * multiplier


def study_settings(workload_id: str) -> RunSettings:
    """How a study trial runs on `workload_id`: to the target or the end of its budget."""
    cfg = variant_config(workload_id)
    eval_every = int(cfg.get("eval_every_steps") or max(int(cfg["step_hint"]) // 10, 1))
    return RunSettings(seed=0, eval_every_steps=eval_every, max_runtime_sec=study_budget(workload_id))


def run_trial(job: tuple[str, dict[str, Value], str]) -> dict[str, object]:
    """One study run: (submission name, point, workload id) -> its outcome (module-level,
    so that worker processes can run it)."""
    name, point, workload_id = job
    submission = load_submission(OmegaConf.to_container(OmegaConf.load(SUBMISSION_DIR / f"{name}.yaml")))
    base, variant = split_workload_id(workload_id)
    workload = build_workload(workload_config(base), variant, "cpu")
    hyperparameters = resolve(submission.search_space, submission.default, point, f"submission {submission.name}")
    outcome = Runner(workload, submission.impl, hyperparameters, study_settings(workload_id)).run()
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


def ranked(records: Sequence[dict[str, object]], budgets: dict[str, float]) -> list[dict[str, object]]:
    """Trials best first: more workloads reached, then less mean time to target (each as a
    fraction of its workload's budget, so that a long workload does not outweigh a short one),
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
        reached = [r["time_to_target"] / budgets[w] for w, r in results.items() if r["time_to_target"] is not None]
        mean_time = sum(reached) / len(reached) if len(reached) == len(results) else math.inf
        return (-len(reached), mean_time, sum(map(failed, results.values())), metric_rank[id(record)])

    return sorted(records, key=key)


def _point_key(point: dict[str, Value]) -> str:
    return json.dumps(point, sort_keys=True)


def settings_record(workloads: Sequence[str], workers: int) -> dict[str, object]:
    """What a study result depends on besides its point: per workload the eval period, the
    budget (in its clock's seconds, named) and the validation target it ran against; the seed
    and torch threads."""
    record: dict[str, object] = {}
    for workload in workloads:
        settings, cfg = study_settings(workload), variant_config(workload)
        record[workload] = {"eval_every_steps": settings.eval_every_steps, "budget_sec": round(settings.max_runtime_sec, 3),
                            "clock": str(cfg.get("clock", "wall")), "validation_target": float(cfg["validation_target"])}
    return record | {"seed": 0, "torch_threads": 1 if workers > 1 else torch.get_num_threads()}


def reusable_results(previous: dict[str, object] | None, settings: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    """(point key, workload) -> result, from a previous record of this study, for every workload
    run with the same settings (eval period, budget and clock, validation target: a
    recalibration moves the last two), by workers with the same number of torch threads (which
    can change a run's numerics)."""
    recorded = (previous or {}).get("settings") or {}
    if not previous or recorded.get("torch_threads") != settings["torch_threads"]:
        return {}
    same = {workload for workload, new in settings.items() if isinstance(new, dict) and recorded.get(workload) == new}
    return {(_point_key(trial["hyperparameters"]), workload): result
            for trial in previous.get("trials", []) for workload, result in trial["results"].items() if workload in same}


def study(name: str, trials: int, workloads: Sequence[str], workers: int, log, previous: dict[str, object] | None = None) -> dict[str, object]:
    """The study record of submission `name`: its `candidate_points` run on `workloads`,
    reusing `previous`'s results where the settings match, and the chosen point."""
    submission = load_submission(OmegaConf.to_container(OmegaConf.load(SUBMISSION_DIR / f"{name}.yaml")))
    points = candidate_points(submission.search_space, trials)
    settings = settings_record(workloads, workers)
    known = reusable_results(previous, settings)
    by_key = {_point_key(point): point for point in points}
    todo = list(dict.fromkeys((key, workload) for key in map(_point_key, points) for workload in workloads if (key, workload) not in known))
    log(f"{name}: {len(points)} points x {len(workloads)} workloads, {len(todo)} runs to do, {len(points) * len(workloads) - len(todo)} reused")
    fresh = dict(zip(todo, map_in_processes(run_trial, [(name, by_key[key], workload) for key, workload in todo], workers), strict=True))
    records = []
    for index, point in enumerate(points):
        results = {workload: known.get((_point_key(point), workload)) or fresh[(_point_key(point), workload)] for workload in workloads}
        for workload, result in results.items():
            log(f"{name} trial {index} on {workload}: {json.dumps(result)}")
        records.append({"trial": index, "source": "halton", "hyperparameters": point, "results": results})
    chosen = ranked(records, {workload: settings[workload]["budget_sec"] for workload in workloads})[0]
    return {
        "submission": name,
        "method": f"the first {trials} scrambled-Halton points of the search space (seed 0, study 0), the same number for every submission; one seed each",
        "workloads": list(workloads),
        "settings": settings,
        "rule": "most workloads reaching the validation target, then least mean time to target as fractions of the budgets, then fewest diverged runs, then best mean rank of the best validation metric",
        "chosen_trial": chosen["trial"],
        "default": chosen["hyperparameters"],
        "trials": records,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_default(name: str, record: dict[str, object], record_path: Path) -> None:
    """Set the chosen point as the `default:` block of configs/submission/<name>.yaml, with a
    `provenance:` block naming `record_path`; every other line of the file stays as it was.

    Raises ValueError (the file then unchanged) when the edit would change anything else."""
    chosen = record["trials"][record["chosen_trial"]]
    reached = sum(r["time_to_target"] is not None for r in chosen["results"].values())
    summary = (f"trial {record['chosen_trial']} of {len(record['trials'])}; reached the target on {reached} of "
               f"{len(chosen['results'])} study workloads ({', '.join(record['workloads'])})")
    provenance = {"study": os.path.relpath(record_path, CONFIG_DIR.parent), "summary": summary}
    set_values(SUBMISSION_DIR / f"{name}.yaml", [], {"default": record["default"], "provenance": provenance})


def table(records: Sequence[dict[str, object]]) -> str:
    """A Markdown table of recorded studies: the workloads each default was tuned on, the chosen
    point's best validation metric and the time (its clock's seconds) in which it reached the target on each workload
    (of any record; "-" where a study did not run it) with the target it ran against (none for
    records that did not record it), and how many study runs reached one."""
    workloads = list(dict.fromkeys(w for record in records for w in record["workloads"]))
    header = ["submission", "default tuned on", "chosen trial (source)"] + [f"{w}: best val. (target)" for w in workloads] + ["runs reaching a target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        chosen = record["trials"][record["chosen_trial"]]
        cells = [f"`{record['submission']}`", ", ".join(f"`{w}`" for w in record["workloads"]), f"{record['chosen_trial']} ({chosen['source']})"]
        for workload in workloads:
            result = chosen["results"].get(workload)
            if result is None:
                cells.append("-")
                continue
            best = "diverged" if result["best_validation"] is None else f"{result['best_validation']:.4g}"
            target = record["settings"][workload].get("validation_target")
            cells.append(best + (f", reached in {result['time_to_target']:.3g} s" if result["time_to_target"] is not None else "")
                         + (f" ({target:.4g})" if target is not None else ""))
        runs = [r for t in record["trials"] for r in t["results"].values()]
        cells.append(f"{sum(r['steps_to_target'] is not None for r in runs)} of {len(runs)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--trials", type=int, default=16, help="candidate points, the same for every submission")
    parser.add_argument("--workloads", default=",".join(STUDY_WORKLOADS), help="comma-separated variant ids (never a base workload: those are scored)")
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
        missing = [name for name in args.names if not (RECORDS_DIR / f"{name}.json").exists()]
        if missing:
            raise PacerUserError(f"no recorded study for {', '.join(missing)} in {RECORDS_DIR}")
        print(table([json.loads((RECORDS_DIR / f"{name}.json").read_text()) for name in args.names]))
        return 0
    if args.trials < 1:
        raise PacerUserError(f"--trials {args.trials}: a study needs at least one point")
    workloads = study_workloads([w for w in args.workloads.split(",") if w])

    def log(line: str) -> None:
        print(line, flush=True)

    RECORDS_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        path = RECORDS_DIR / f"{name}.json"
        previous = json.loads(path.read_text()) if path.exists() else None
        record = study(name, args.trials, workloads, args.workers, log, previous)
        atomic_write(path, json.dumps(record, indent=1) + "\n")
        write_default(name, record, path)
        log(f"{name}: chose trial {record['chosen_trial']}: {record['default']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
