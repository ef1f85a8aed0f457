"""`pacer score --compat algoperf`: the numbers AlgoPerf's own scoring code produces.

Follows mlcommons/submissions_algorithms `scoring/performance_profile.py`
(`get_workloads_time_to_target`, `compute_performance_profiles`) and
`scoring/score_submissions.py` (`compute_leaderboard_score` with `normalize=True`,
`max_tau=4.0`, 100 points) step by step, including where that code departs from AlgoPerf's
written rules, and taking the published leaderboards' side where the code leaves a result to
the filesystem (eval-index ties). docs/scoring.md lists every
departure; tests/test_algoperf_compat.py checks each one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.scoring.algoperf_import import algoperf_round
from harness.scoring.rules import ScoreResult, ScoringRules, check_comparable, first_reaching, infer_ruleset, trial_times

ALGOPERF_TAU_POINTS = 100


def best_trial_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per (submission, workload, study): AlgoPerf's `get_best_trial_index` + time lookup.

    Among the trials that reach the target, the one reaching it at the smallest *eval index*
    wins (not the smallest time). Among trials tied at that index AlgoPerf's code keeps the
    first in directory-listing order, which depends on the filesystem; the published
    leaderboards (v0.6 baseline) correspond to the smallest time, so that is taken here. A
    trial without any eval is not a trial at all (AlgoPerf never reads it), so a study whose
    trials all lack evals does not exist."""
    df = df[df["global_step"].notna()] if "global_step" in df else df.iloc[:0]
    if df.empty:
        return pd.DataFrame(columns=["submission", "workload", "study", "time"])
    run_id, run_dirs = pd.factorize(df["run_dir"], sort=False)
    first = first_reaching(df.reset_index(drop=True), run_id, len(run_dirs), "validation")
    start = np.full(len(run_dirs), -1)
    owners, at = np.unique(run_id, return_index=True)
    start[owners] = at
    time_column = "score" if "score" in df.columns and df["score"].notna().any() else "accumulated_submission_time"
    times = df[time_column].to_numpy(dtype=float)
    runs = df.drop_duplicates("run_dir").set_index("run_dir").loc[run_dirs, ["submission", "workload", "study", "trial", "experiment"]].reset_index()
    reached = first >= 0
    runs["eval_index"] = np.where(reached, first - start, np.iinfo(np.int64).max)
    runs["time"] = np.where(reached, times[np.maximum(first, 0)], np.inf)
    runs = runs.sort_values(["submission", "workload", "study", "eval_index", "time", "experiment", "trial"], kind="stable")
    return runs.drop_duplicates(["submission", "workload", "study"], keep="first")[["submission", "workload", "study", "time"]]


def score_algoperf(df: pd.DataFrame, rules: ScoringRules | None = None, *, allow_mixed: bool = False) -> ScoreResult:
    """Score a `load_results` frame exactly as AlgoPerf's scoring code would
    (`compute_performance_profiles` of mlcommons/submissions_algorithms `scoring/`).

    The round's configuration: for imported logs, the shipped table of their round (base
    workloads, held-out draw, number of base workloads: 8 in v0.5/v0.6, 9 in v1.0); for
    Pacer's own runs, the base workloads in the table, every variant present filtering its base."""
    rules = rules or ScoringRules()
    notes = check_comparable(df, allow_mixed)
    trials = trial_times(df)
    ruleset = infer_ruleset(trials)
    best = best_trial_times(df)
    per_workload = best.groupby(["submission", "workload"])["time"].agg(lambda v: float(np.median(v.to_numpy())))
    times = per_workload.unstack("workload")  # a workload a submission never ran stays NaN, as in AlgoPerf's pivot
    times = times.reindex(sorted(trials["submission"].unique()))
    bases, held_out, n = _round_config(trials, times)
    table = times.reindex(columns=sorted(set(bases) | set(held_out))) if held_out else times.copy()
    variants = [w for w in table.columns if w not in bases]
    recorded = trials.drop_duplicates("workload").set_index("workload")["base_workload"].dropna().to_dict()
    base_of = {v: recorded.get(v) or _base_workload_name(v, bases) for v in variants}
    # A variant whose base was missed (inf) or never run (NaN) is a miss, before the cut-off sees it.
    for variant in variants:
        base = _column(table, base_of[variant])
        table[variant] = table[variant].where(np.isfinite(base.fillna(np.inf)), np.inf)
    cut = table.mask(table.gt(4 * table.min(axis=0), axis=1), np.inf)
    # A base whose variant was missed or never run (NaN: e.g. every trial ran out of memory) is a miss.
    for variant in variants:
        base = base_of[variant]
        cut[base] = _column(cut, base).where(np.isfinite(cut[variant].fillna(np.inf)), np.inf)
    scored = cut.reindex(columns=sorted(bases))
    reference = scored.min(axis=0) if rules.reference is None else scored.loc[rules.reference]
    divided = scored.div(reference, axis=1)
    ratios = divided.where(divided.notna(), scored)  # DataFrame.update keeps the old value where the quotient is NaN
    n = rules.num_workloads or n
    taus = np.linspace(1.0, 4.0, ALGOPERF_TAU_POINTS)
    rho = np.stack([(ratios.to_numpy() <= tau).sum(axis=1) / n for tau in taus], axis=1)
    scores = np.trapezoid(rho, x=taus, axis=1) / (taus.max() - taus.min())
    return ScoreResult(times=times, scored_times=scored, ratios=ratios, scores=pd.Series(scores, index=scored.index, name="score"),
                       trials=trials, rules=rules, ruleset=ruleset, warnings=notes)


def _base_workload_name(variant: str, bases: list[str]) -> str:
    """AlgoPerf's `base_workload_name` (for a held-out variant nobody ran): the first base
    workload whose name the variant's contains."""
    return next((b for b in bases if b in variant), variant)


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    """A column of `table`, all NaN where nobody ran that workload (AlgoPerf would add it so)."""
    return table[name] if name in table.columns else pd.Series(np.nan, index=table.index)


def _round_config(trials: pd.DataFrame, times: pd.DataFrame) -> tuple[list[str], list[str], int]:
    """(base workloads, held-out variants, number of base workloads) of the round scored: an
    imported round's shipped table, else the base workloads present and no held-out draw."""
    sources = set(trials["source"].dropna().astype(str)) if "source" in trials.columns else set()
    if len(sources) == 1 and next(iter(sources)).startswith("algoperf:"):
        round_ = algoperf_round(next(iter(sources)).split(":", 1)[1])
        return list(round_.base_workloads), list(round_.held_out), round_.num_base_workloads
    runs = trials.drop_duplicates("workload").set_index("workload")
    bases = [w for w in times.columns if pd.isna(runs.loc[w, "variant"]) or runs.loc[w, "variant"] in ("", None)]
    return bases, [], len(bases)
