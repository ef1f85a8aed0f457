"""`pacer calibrate`: AlgoPerf's target-setting procedure, scaled down by flags.

1. Each reference algorithm (AdamW, NAdamW, SGD with Nesterov, heavy-ball momentum) runs
   `trials` quasi-random points of its search space (`harness.plugins.search.study_points`), each
   for a fixed `steps` budget with an eval every `eval_every` steps and no early stop; the
   workload's `step_hint` is set to `steps` so that schedules span the budget.
2. The trial with the best validation metric (any algorithm) is rerun `reruns` times with
   fresh seeds.
3. validation target = median of the reruns' best validation metrics;
   test target = worst best-test metric among the reruns that reached the validation target;
   budget (`max_runtime_sec`) = 4/3 x the median submission time those reruns took to reach it;
   `step_hint` = the step budget the trials and reruns had (AlgoPerf's meaning);
   `eval_period_sec` = so that an eval costs ~15% of training time (within budget/40..budget/10).
4. The targets are written into `configs/workload/<name>.yaml` (into the variant's block for
   `variant=...`), editing only those keys, and the provenance (algorithms, trials, every
   rerun's results, hardware, load, date) into `records/calibration/<name>.json`
   (`harness.experiments.calibration_records`); a table is printed.

`retime=true` keeps the targets and re-measures only the budget: it reruns the committed best
configuration with the provenance's seeds, step budget and eval schedule, one run at a time,
times each rerun to the committed validation target, and writes `max_runtime_sec`,
`eval_period_sec` and a `retimed` entry in the provenance (hardware, load, times, and whether
the steps to target matched the calibration's). This is how budgets move to other hardware, or are
re-measured on a quiet machine, for the cost of the reruns alone.

Every run goes through `harness.experiments.job.run_job` and keeps its record under the results root.
Trial points, seeds and evals-by-step are deterministic, so the same flags give the same
targets (exactly for steps, within timing noise for the budget). `workers=N` runs the tuning
trials in N processes of one torch thread each (their results are step-based, so sharing the
machine changes nothing); the timed reruns of a `normalized`-clock workload run N at a time
too (the reference probes absorb the sharing), those of a `wall` workload one at a time. The
reference (`reference.step_sec`) is the median of the reruns' probe medians. A run whose finished
record has the same config is reused (`reuse=false` reruns everything), so an interrupted
calibration continues where it stopped, and deleting the reruns' folders re-times only them."""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from harness.core import rng as rnglib
from harness.core.checks import whole_number
from harness.core.errors import PacerUserError
from harness.core.fingerprint import fingerprint, matmul_gflops, package_version
from harness.core.spec import MetricDirection
from harness.core.store import TERMINAL_STATUSES, RunDir
from harness.experiments.calibration_records import RECORDS_DIR, provenance_of, record_path, write_provenance
from harness.experiments.job import run_job
from harness.experiments.parallel import map_in_processes
from harness.experiments.run_config import SWEEP_ONLY_KEYS, RunConfig, compose, normalize_overrides
from harness.experiments.yaml_edit import set_values
from harness.plugins.hparams import resolve
from harness.plugins.search import study_points
from harness.plugins.submissions import load_submission
from harness.plugins.workloads import CONFIG_DIR, build_workload, resolve_variant

BUDGET_FACTOR = 4 / 3
EVAL_SHARE = 0.15
WRITTEN_KEYS = ("validation_target", "test_target", "max_runtime_sec", "eval_period_sec", "step_hint", "provenance", "variants", "reference", "eval_every_steps")
"""Workload keys that calibration writes (or that hold other calibrations): ignored when deciding
whether a finished run can be reused. `provenance` is in the workload configs of runs recorded
before it moved to records/calibration/."""
RUN_CONTROL_KEYS = ("overwrite", "resume", "quiet")
SUBMISSION_DEFAULT_KEYS = ("default", "provenance")
"""Submission keys that a default-point study rewrites: a reused run is checked on the
hyperparameters it actually used instead."""
TRIALS_STUDY, RERUNS_STUDY = 0, 1


@dataclass(frozen=True)
class RunSummary:
    submission: str
    trial: int
    status: str
    best_validation: float | None
    best_test: float | None
    evals: list[dict[str, float]]
    hyperparameters: dict[str, object]
    probe_median_sec: float | None = None
    """Normalized-clock workloads: the run's median reference probe, seconds."""


@dataclass(frozen=True)
class Targets:
    validation: float
    test: float
    max_runtime_sec: float
    step_hint: int
    eval_period_sec: float
    reached: int
    reference_sec: float | None = None
    """Normalized clock: the reference computation's seconds on this (the calibration) host."""
    eval_every_steps: int | None = None


def calibrate_workload(overrides: Sequence[str], *, trials: int, reruns: int, steps: int | None, eval_every: int | None, workers: int,
                       algorithms: Sequence[str], write: bool, reuse: bool, retime_only: bool) -> int:
    """`pacer calibrate`: `calibrate` (or, with `retime_only`, `retime`) the workload of the
    config that `overrides` compose, and print its table. Returns 0. Raises PacerUserError (one
    line) for a bad override, seed or any `hparams.*` (calibrate tunes over search spaces)."""
    base = OmegaConf.to_container(compose(normalize_overrides(overrides)), resolve=True)
    try:
        whole_number("seed", base["seed"], minimum=0)
    except ValueError as e:
        raise PacerUserError(str(e)) from None
    if base.get("hparams"):
        raise PacerUserError(f"hparams.{next(iter(base['hparams']))}: calibrate tunes every algorithm over its own search space and would not use it; "
                             "narrow a search space in configs/submission/ instead")
    if retime_only:
        print(retime_summary(retime(base, write=write, eval_every=eval_every, workers=workers)))
        return 0
    result = calibrate(base, trials=trials, reruns=reruns, steps=steps, eval_every=eval_every, algorithms=algorithms, write=write, workers=workers, reuse=reuse)
    print(summary_table(result))
    return 0


def calibrate(base: dict[str, object], *, trials: int, reruns: int, steps: int | None, eval_every: int | None, algorithms: Sequence[str],
              write: bool, workers: int = 1, reuse: bool = True, records_dir: Path = RECORDS_DIR) -> dict[str, object]:
    """Run the whole procedure on the composed config `base`.

    Returns the targets (written into the workload YAML when `write`), the provenance (written
    into its record under `records_dir` when `write`), every trial's and rerun's summary, the
    workload's name and its metric."""
    started = time.monotonic()
    variant = base.get("variant")
    workload_cfg = resolve_variant(base["workload"], variant)
    plan = workload_cfg.get("calibration") or {}
    steps = steps or plan.get("steps")
    eval_every = eval_every or plan.get("eval_every_steps")
    if not steps or not eval_every:
        raise PacerUserError(f"workload {workload_cfg['name']}: give steps= and eval_every= (or a `calibration:` block with steps and eval_every_steps)")
    common = _common_config(base, workload_cfg, steps, eval_every, reuse)
    workload = build_workload(common["workload"], None, str(base["device"]))  # checks data_dir and settings up front
    seed = int(base["seed"])
    summaries = _run_all([cfg for algo in algorithms for cfg in _tuning_configs(common, algo, trials, seed)], workers)
    best = _best(summaries, workload.target_metric_direction)
    load_before = os.getloadavg()[0]
    rerun_summaries = _run_all(_rerun_configs(common, best.submission, best.hyperparameters, reruns, seed), _rerun_workers(workload, workers))
    conditions = {"load_average_before_reruns": round(load_before, 2), "load_average_after_reruns": round(os.getloadavg()[0], 2), "trial_workers": workers,
                  "rerun_workers": _rerun_workers(workload, workers)}
    provenance = _provenance(workload, algorithms, trials, reruns, steps, eval_every, seed, best, rerun_summaries, summaries, time.monotonic() - started, conditions)
    targets = targets_from_provenance(provenance)
    if write:
        write_targets(_config_path(workload_cfg), record_path(_base_name(workload_cfg), records_dir), variant, targets, provenance)
    return {"targets": targets, "provenance": provenance, "trials": summaries, "reruns": rerun_summaries, "workload": workload.name, "metric": workload.target_metric_name}


def retime(base: dict[str, object], *, write: bool, eval_every: int | None = None, workers: int = 1, records_dir: Path = RECORDS_DIR) -> dict[str, object]:
    """Re-measure the budget of the committed calibration of `base`'s workload, whose record is
    under `records_dir` (see the module doc).

    Raises PacerUserError when the record has no `pacer calibrate` provenance for it, or when no
    rerun reaches its validation target."""
    started = time.monotonic()
    variant = base.get("variant")
    workload_cfg = resolve_variant(base["workload"], variant)
    record = record_path(_base_name(workload_cfg), records_dir)
    provenance = provenance_of(record, variant)
    label = f"{workload_cfg['name']}" + (f" variant {variant}" if variant else "")
    if not isinstance(provenance, Mapping) or provenance.get("method") != "pacer calibrate":
        raise PacerUserError(f"calibrate: {label} has no `pacer calibrate` provenance to re-time; run a full calibration")
    eval_every = eval_every or int(latest_timing(provenance)["eval_every_steps"])
    common = _common_config(base, workload_cfg, int(provenance["step_budget"]), eval_every, reuse=False)
    workload = build_workload(common["workload"], None, str(base["device"]))
    best = provenance["best"]
    load_before = os.getloadavg()[0]
    reruns = _run_all(_rerun_configs(common, best["submission"], best["hyperparameters"], int(provenance["reruns"]), int(provenance["seed"])),
                      _rerun_workers(workload, workers))
    metric, direction = workload.target_metric_name, workload.target_metric_direction
    rows = [_first_reaching(r.evals, f"validation/{metric}", float(workload_cfg["validation_target"]), direction) for r in reruns]
    if all(row is None for row in rows):
        raise PacerUserError(f"calibrate: no rerun of {label}'s best configuration reached its validation target {workload_cfg['validation_target']} here "
                             "(the numerics differ from the calibration's); run a full calibration")
    fp = fingerprint(workload.device)
    to_target = _to_target(rows, reruns, workload.clock)
    retimed = to_target | {
        "eval_every_steps": eval_every,
        "rerun_eval_cost_sec": [_eval_cost(r) for r in reruns],
        "same_steps_as_calibration": to_target["rerun_steps_to_target"] == provenance["rerun_steps_to_target"],
        "hardware": _hardware(fp, workload.device),
        "conditions": {"load_average_before_reruns": round(load_before, 2), "load_average_after_reruns": round(os.getloadavg()[0], 2),
                       "rerun_workers": _rerun_workers(workload, workers)},
        "date": _now(),
        "package_version": package_version(),
        "git_commit": fp["git_commit"],
        "wall_time_sec": round(time.monotonic() - started, 1),
    }
    new_provenance = {k: v for k, v in provenance.items() if k != "retimed"} | {"retimed": json.loads(json.dumps(retimed))}
    targets = targets_from_provenance(new_provenance)
    if write:
        write_targets(_config_path(workload_cfg), record, variant, targets, new_provenance)
    return {"workload": _label(workload_cfg), "targets": targets, "before": workload_cfg, "retimed": retimed, "reruns": reruns}


def retime_summary(result: Mapping[str, object]) -> str:
    before, t, r = result["before"], result["targets"], result["retimed"]
    return "\n".join([
        f"re-timed {result['workload']}: {sum(x is not None for x in r['rerun_time_to_target_sec'])}/{len(r['rerun_time_to_target_sec'])} reruns reached the validation target {before['validation_target']}",
        f"times to target (s) {r['rerun_time_to_target_sec']}   steps {r['rerun_steps_to_target']} (same as the calibration's: {'yes' if r['same_steps_as_calibration'] else 'no'})",
        f"max_runtime_sec {before['max_runtime_sec']} -> {t.max_runtime_sec:g}   eval_period_sec {before['eval_period_sec']} -> {t.eval_period_sec:g}"
        + (f"   reference {t.reference_sec:.4g} s   eval_every_steps {t.eval_every_steps}" if t.reference_sec else ""),
        f"load average {r['conditions']['load_average_before_reruns']} -> {r['conditions']['load_average_after_reruns']}; wall time {r['wall_time_sec']:.0f} s",
    ])


def _common_config(base: Mapping[str, object], workload_cfg: dict[str, object], steps: int, eval_every: int, reuse: bool) -> dict[str, object]:
    """The run config shared by every calibration run: fixed steps, evals by step, no stop.
    A normalized-clock workload runs with its reference in measuring mode (raw seconds, the
    probes recorded): the reruns' probes become the calibration host's reference."""
    workload = dict(workload_cfg) | {"step_hint": steps}
    if workload.get("clock") == "normalized":
        workload |= {"reference": {"step_sec": None}, "eval_every_steps": eval_every}
    return dict(base) | {
        "workload": workload, "variant": None, "max_steps": steps, "eval_every_steps": eval_every,
        "stop_at_target": False, "max_runtime_sec": 1e9, "overwrite": not reuse, "resume": reuse, "quiet": True,
        "experiment": base["experiment"] if base["experiment"] != "default" else "calibrate",
    }


def _tuning_configs(common: dict[str, object], algorithm: str, trials: int, seed: int) -> list[dict[str, object]]:
    submission_cfg = _submission_config(algorithm)
    space = load_submission(submission_cfg).search_space
    points = study_points(space, trials, seed, TRIALS_STUDY)
    return [
        _run_config(common, submission_cfg, point, TRIALS_STUDY, trial, rnglib.from_strings("calibrate-trial", seed, algorithm, trial) % (1 << 31))
        for trial, point in enumerate(points)
    ]


def _rerun_configs(common: dict[str, object], submission: str, hyperparameters: Mapping[str, object], reruns: int, seed: int) -> list[dict[str, object]]:
    submission_cfg = _submission_config(submission)
    return [
        _run_config(common, submission_cfg, hyperparameters, RERUNS_STUDY, r, rnglib.from_strings("calibrate-rerun", seed, r) % (1 << 31))
        for r in range(reruns)
    ]


def _submission_config(name: str) -> dict[str, object]:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml"), resolve=True)


def _run_config(common: dict[str, object], submission_cfg: dict[str, object], point: Mapping[str, object], study: int, trial: int, run_seed: int) -> dict[str, object]:
    return common | {"submission": submission_cfg, "hparams": dict(point), "study": study, "trial": trial, "seed": run_seed}


def _run_all(configs: Sequence[dict[str, object]], workers: int) -> list[RunSummary]:
    """Run (or reuse) every config, in order; `workers` > 1: in that many one-thread processes.
    A name or a linked folder that `RunConfig.run_dir` refuses stops the calibration before any run."""
    paths = [RunConfig.from_mapping(cfg).run_dir for cfg in configs]
    stale = [cfg for cfg, path in zip(configs, paths, strict=True) if not _reusable(cfg, path)]
    map_in_processes(_run_job_quietly, stale, workers)
    return [_summary(path) for path in paths]


def _run_job_quietly(cfg: dict[str, object]) -> str:
    return str(run_job(cfg | {"resume": False, "overwrite": True})["status"])


def _reusable(cfg: Mapping[str, object], path: Path) -> bool:
    """A finished run of the same config (what calibration writes into the workload aside)."""
    if not cfg["resume"]:
        return False
    record = RunDir(path).read_run()
    if record is None or record.get("status") not in TERMINAL_STATUSES or record["status"] == "error":
        return False
    return _comparable(record.get("config") or {}) == _comparable(cfg) and record.get("hyperparameters") == _hyperparameters(cfg)


def _comparable(cfg: Mapping[str, object]) -> str:
    plain = {k: v for k, v in cfg.items() if k not in RUN_CONTROL_KEYS + SWEEP_ONLY_KEYS}
    plain["workload"] = {k: v for k, v in dict(plain.get("workload") or {}).items() if k not in WRITTEN_KEYS}
    plain["submission"] = {k: v for k, v in dict(plain.get("submission") or {}).items() if k not in SUBMISSION_DEFAULT_KEYS}
    return json.dumps(plain, sort_keys=True, default=str)


def _hyperparameters(cfg: Mapping[str, object]) -> dict[str, object]:
    submission = load_submission(cfg["submission"])
    return json.loads(json.dumps(dict(resolve(submission.search_space, submission.default, cfg["hparams"], f"submission {submission.name}"))))


def _summary(path: Path) -> RunSummary:
    run_dir = RunDir(path)
    record = run_dir.read_run()
    evals = run_dir.read_evals()
    metric, direction = record["target"]["metric"], MetricDirection(record["target"]["direction"])
    ok = record["status"] not in ("diverged", "error") and evals
    return RunSummary(
        submission=str(record["submission"]), trial=int(record["trial"]), status=str(record["status"]),
        best_validation=_best_value(evals, f"validation/{metric}", direction) if ok else None,
        best_test=_best_value(evals, f"test/{metric}", direction) if ok else None,
        evals=evals, hyperparameters=dict(record["hyperparameters"]),
        probe_median_sec=((record.get("clock") or {}).get("probes") or {}).get("median_sec"))


def _best_value(evals: Sequence[Mapping[str, float]], key: str, direction: MetricDirection) -> float | None:
    return direction.best(round(float(row[key]), 6) for row in evals)


def _best(summaries: Sequence[RunSummary], direction: MetricDirection) -> RunSummary:
    scored = [s for s in summaries if s.best_validation is not None]
    if not scored:
        raise PacerUserError("calibrate: every tuning trial diverged or failed; see the run records")
    sign = 1 if direction is MetricDirection.MAXIMIZE else -1
    return max(scored, key=lambda s: sign * s.best_validation)


def latest_timing(provenance: Mapping[str, object]) -> Mapping[str, object]:
    """The provenance's latest clock readings: its `retimed` block when a re-timing replaced
    the calibration's (times, reference, eval plan, hardware, date), else the calibration's own."""
    return provenance.get("retimed") or provenance  # type: ignore[return-value]


def targets_from_provenance(provenance: Mapping[str, object]) -> Targets:
    """The targets implied by a provenance block's rerun results (AlgoPerf's rules, see the
    module doc). `calibrate` writes exactly these, so a config can be checked against them."""
    direction = MetricDirection(provenance["direction"])
    best = provenance["rerun_best_validation"]
    finished = [v for v in best if v is not None]
    if not finished:
        raise PacerUserError("calibrate: every rerun of the best configuration diverged or failed")
    validation = statistics.median_low(finished)  # one rerun's value, never an average
    reached = [i for i, v in enumerate(best) if v is not None and direction.reached(v, validation)]
    worst = min if direction is MetricDirection.MAXIMIZE else max
    test = worst(provenance["rerun_best_test"][i] for i in reached)
    timing = latest_timing(provenance)
    timed = [i for i, t in enumerate(timing["rerun_time_to_target_sec"]) if t is not None]
    time_to_target = statistics.median(timing["rerun_time_to_target_sec"][i] for i in timed)
    step_hint = int(provenance["step_budget"])  # the steps the target-setting runs were given (AlgoPerf's meaning)
    budget = round(BUDGET_FACTOR * time_to_target, 2)
    eval_cost = statistics.median(timing["rerun_eval_cost_sec"][i] for i in timed)
    period = min(max(eval_cost * (1 / EVAL_SHARE - 1), budget / 40), budget / 10)
    reference = timing.get("reference_sec")
    return Targets(validation, test, budget, step_hint, round(period, 3), len(reached), reference, timing.get("eval_every_steps") if reference else None)


def _first_reaching(evals: Sequence[Mapping[str, float]], key: str, target: float, direction: MetricDirection) -> Mapping[str, float] | None:
    return next((row for row in evals if direction.reached(round(float(row[key]), 6), target)), None)


def _provenance(workload, algorithms: Sequence[str], trials: int, reruns: int, steps: int, eval_every: int, seed: int,
                best: RunSummary, rerun_summaries: Sequence[RunSummary], summaries: Sequence[RunSummary], wall_sec: float,
                conditions: Mapping[str, object]) -> dict[str, object]:
    metric, direction = workload.target_metric_name, workload.target_metric_direction
    fp = fingerprint(workload.device)
    per_algorithm = {a: _best_value_of([s for s in summaries if s.submission == a], direction) for a in algorithms}
    provenance: dict[str, object] = {
        "method": "pacer calibrate",
        "algorithms": list(algorithms),
        "trials_per_algorithm": trials,
        "reruns": reruns,
        "step_budget": steps,
        "eval_every_steps": eval_every,
        "seed": seed,
        "metric": metric,
        "direction": direction.value,
        "best_validation_per_algorithm": per_algorithm,
        "best": {"submission": best.submission, "trial": best.trial, "hyperparameters": best.hyperparameters},
        "rerun_best_validation": [r.best_validation for r in rerun_summaries],
        "rerun_best_test": [r.best_test for r in rerun_summaries],
    }
    validation = statistics.median_low([r.best_validation for r in rerun_summaries if r.best_validation is not None])
    rows = [_first_reaching(r.evals, f"validation/{metric}", validation, direction) if r.best_validation is not None else None for r in rerun_summaries]
    provenance |= _to_target(rows, rerun_summaries, workload.clock)
    provenance["rerun_eval_cost_sec"] = [_eval_cost(r) for r in rerun_summaries]
    if workload.optimal_loss is not None:
        provenance["optimal_loss"] = round(float(workload.optimal_loss), 6)
    provenance |= {
        "hardware": _hardware(fp, workload.device),
        "conditions": dict(conditions),
        "date": _now(),
        "package_version": package_version(),
        "git_commit": fp["git_commit"],
        "wall_time_sec": round(wall_sec, 1),
    }
    return json.loads(json.dumps(provenance))  # plain types only (torch's version string is a str subclass)


def _to_target(rows: Sequence[Mapping[str, float] | None], runs: Sequence[RunSummary], clock: str) -> dict[str, object]:
    """Each rerun's steps, submission time, evals and eval share at its first eval on target
    (None: never). On the normalized clock the reference is the median of the reruns' probes,
    and each rerun's time is in reference seconds: its raw seconds scaled by its own probes."""
    reference = _reference_sec(runs) if clock == "normalized" else None
    scales = [reference / r.probe_median_sec if reference and r.probe_median_sec else 1.0 for r in runs]
    out: dict[str, object] = {
        "rerun_steps_to_target": [None if row is None else int(row["global_step"]) for row in rows],
        "rerun_time_to_target_sec": [None if row is None else round(float(row["accumulated_submission_time"]) * scale, 3) for row, scale in zip(rows, scales, strict=True)],
        "rerun_evals_to_target": [None if row is None else _evals_until(run.evals, row) for row, run in zip(rows, runs, strict=True)],
        "rerun_eval_share": [None if row is None else round(float(row["accumulated_eval_time"]) / float(row["accumulated_submission_time"]), 4) for row in rows],
    }
    if reference is not None:
        out |= {"reference_sec": round(reference, 7), "rerun_probe_median_sec": [r.probe_median_sec for r in runs]}
    return out


def _reference_sec(runs: Sequence[RunSummary]) -> float | None:
    probes = [r.probe_median_sec for r in runs if r.probe_median_sec]
    return statistics.median(probes) if probes else None


def _evals_until(evals: Sequence[Mapping[str, float]], row: Mapping[str, float]) -> int:
    return sum(1 for e in evals if e["global_step"] <= row["global_step"])


def _rerun_workers(workload: object, workers: int) -> int:
    """Reruns are timed: on the wall clock one at a time; the normalized clock measures
    the machine's speed while they run, so they share the cores like the trials."""
    return workers if workload.clock == "normalized" else 1


def _base_name(workload_cfg: Mapping[str, object]) -> str:
    return str(workload_cfg.get("base_name") or workload_cfg["name"])


def _config_path(workload_cfg: Mapping[str, object]) -> Path:
    return CONFIG_DIR / "workload" / f"{_base_name(workload_cfg)}.yaml"


def _label(workload_cfg: Mapping[str, object]) -> str:
    return str(workload_cfg["name"])


def _eval_cost(run: RunSummary) -> float | None:
    return round(run.evals[-1]["accumulated_eval_time"] / len(run.evals), 4) if run.evals else None


def _hardware(fp: Mapping[str, object], device: object) -> dict[str, object]:
    return {k: fp[k] for k in ("id", "cpu", "cpu_id", "cpu_capability", "cpu_count", "torch_threads", "torch", "device", "gpu")} | {"matmul_gflops": matmul_gflops(device)}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _best_value_of(summaries: Sequence[RunSummary], direction: MetricDirection) -> float | None:
    return direction.best(s.best_validation for s in summaries if s.best_validation is not None)


# --- writing the calibration ------------------------------------------------------------------

def write_targets(config: Path, record: Path, variant: str | None, targets: Targets, provenance: Mapping[str, object]) -> None:
    """Set the targets of the base workload (or of `variant`) in the workload YAML `config`,
    leaving every other line as it was, and their provenance in the calibration record `record`.

    Raises ValueError when the YAML edit would change more than the targets (nothing is then
    written), OSError when the file system refuses."""
    values: dict[str, object] = {
        "validation_target": targets.validation, "test_target": targets.test, "max_runtime_sec": targets.max_runtime_sec,
        "eval_period_sec": targets.eval_period_sec, "step_hint": targets.step_hint,
    }
    if targets.reference_sec is not None:
        timing = latest_timing(provenance)
        host = timing["hardware"]
        values |= {"eval_every_steps": targets.eval_every_steps,
                   "reference": {"step_sec": targets.reference_sec, "host": host["id"], "cpu": host["cpu"], "threads": 1, "measured": timing["date"]}}
    set_values(config, ["variants", variant] if variant else [], values)  # runs reading the config meanwhile see the old or the new file
    write_provenance(record, variant, provenance)


def summary_table(result: Mapping[str, object]) -> str:
    """The human-readable outcome: every trial, the reruns and the targets."""
    metric = result["metric"]
    lines = [f"calibration of {result['workload']} ({metric})", f"{'run':<24}{'status':<18}{'best val':>10}{'best test':>10}"]
    for label, runs in (("trial", result["trials"]), ("rerun", result["reruns"])):
        for r in runs:
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            lines.append(f"{r.submission + ' ' + label + ' ' + str(r.trial):<24}{r.status:<18}{fmt(r.best_validation):>10}{fmt(r.best_test):>10}")
    t, p = result["targets"], result["provenance"]
    lines += [
        f"best: {p['best']['submission']} trial {p['best']['trial']} {p['best']['hyperparameters']}",
        f"validation target {t.validation:.6g}   test target {t.test:.6g}   (reached by {t.reached}/{len(result['reruns'])} reruns)",
        f"max_runtime_sec {t.max_runtime_sec:g}   step_hint {t.step_hint}   eval_period_sec {t.eval_period_sec:g}" + (f"   optimal loss {p['optimal_loss']:.6g}" if "optimal_loss" in p else ""),
        f"calibration wall time {p['wall_time_sec']:.0f} s",
    ]
    return "\n".join(lines)
