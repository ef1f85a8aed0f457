"""`pacer score --compat algoperf`: the numbers AlgoPerf's own scoring code produces.

Follows `scoring/performance_profile.py` (`get_workloads_time_to_target`,
`compute_performance_profiles`) and `scoring/algoperf_v05/score_submissions.py`
(`compute_leaderboard_score` with `normalize=True`, `max_tau=4.0`, 100 points) step by step,
including where that code departs from AlgoPerf's written rules. docs/scoring.md lists every
departure; tests/test_algoperf_compat.py checks each one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.scoring import ScoreResult, ScoringRules, _first_reaching, check_comparable, infer_ruleset, trial_times

ALGOPERF_NUM_BASE_WORKLOADS = 8
"""AlgoPerf divides rho by this constant, whatever the number of workloads scored."""
ALGOPERF_TAU_POINTS = 100


def best_trial_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per (submission, workload, study): AlgoPerf's `get_best_trial_index` + time lookup.

    Among the trials that reach the target, the one reaching it at the smallest *eval index*
    wins (not the smallest time); ties go to the first trial in AlgoPerf's row order: the
    original experiment folder before its reruns, then (here) the lowest trial number. A trial without any eval is not a trial at all (AlgoPerf never reads it), so a
    study whose trials all lack evals does not exist."""
    df = df[df["global_step"].notna()] if "global_step" in df else df.iloc[:0]
    if df.empty:
        return pd.DataFrame(columns=["submission", "workload", "study", "time"])
    run_id, run_dirs = pd.factorize(df["run_dir"], sort=False)
    first = _first_reaching(df.reset_index(drop=True), run_id, len(run_dirs), "validation")
    start = np.full(len(run_dirs), -1)
    owners, at = np.unique(run_id, return_index=True)
    start[owners] = at
    time_column = "score" if "score" in df.columns and df["score"].notna().any() else "accumulated_submission_time"
    times = df[time_column].to_numpy(dtype=float)
    runs = df.drop_duplicates("run_dir").set_index("run_dir").loc[run_dirs, ["submission", "workload", "study", "trial", "experiment"]].reset_index()
    reached = first >= 0
    runs["eval_index"] = np.where(reached, first - start, np.iinfo(np.int64).max)
    runs["time"] = np.where(reached, times[np.maximum(first, 0)], np.inf)
    runs = runs.sort_values(["submission", "workload", "study", "eval_index", "experiment", "trial"], kind="stable")
    return runs.drop_duplicates(["submission", "workload", "study"], keep="first")[["submission", "workload", "study", "time"]]


def score_algoperf(df: pd.DataFrame, rules: ScoringRules | None = None, *, allow_mixed: bool = False) -> ScoreResult:
    """Score a `load_results` frame exactly as AlgoPerf's scoring code would."""
    rules = rules or ScoringRules()
    notes = check_comparable(df, allow_mixed)
    trials = trial_times(df)
    ruleset = infer_ruleset(trials)
    best = best_trial_times(df)
    per_workload = best.groupby(["submission", "workload"])["time"].agg(lambda v: float(np.median(v.to_numpy())))
    times = per_workload.unstack("workload")  # a workload a submission never ran stays NaN, as in AlgoPerf's pivot
    times = times.reindex(sorted(trials["submission"].unique()))
    # 4x cut-off first, on every workload including variants, against the fastest before the held-out filter.
    best_per_workload = times.min(axis=0)
    cut = times.mask(times.gt(4 * best_per_workload, axis=1), np.inf)
    # Held-out filter: every variant present (not only the drawn ones), one direction only.
    runs = trials.drop_duplicates("workload").set_index("workload")
    bases = [w for w in cut.columns if pd.isna(runs.loc[w, "variant"]) or runs.loc[w, "variant"] in ("", None)]
    for workload in cut.columns:
        base = runs.loc[workload, "base_workload"]
        if workload not in bases and base in cut.columns:
            cut[base] = cut[base].where(~(cut[workload] == np.inf), np.inf)
    expected = _expected_base_workloads(trials)
    scored = cut.reindex(columns=sorted(set(bases) | set(expected)))
    reference = scored.min(axis=0) if rules.reference is None else scored.loc[rules.reference]
    divided = scored.div(reference, axis=1)
    ratios = divided.where(divided.notna(), scored)  # DataFrame.update keeps the old value where the quotient is NaN
    n = rules.num_workloads or ALGOPERF_NUM_BASE_WORKLOADS
    taus = np.linspace(1.0, 4.0, ALGOPERF_TAU_POINTS)
    rho = np.stack([(ratios.to_numpy() <= tau).sum(axis=1) / n for tau in taus], axis=1)
    scores = np.trapezoid(rho, x=taus, axis=1) / (taus.max() - taus.min())
    return ScoreResult(times=times, scored_times=scored, ratios=ratios, scores=pd.Series(scores, index=scored.index, name="score"),
                       trials=trials, rules=rules, ruleset=ruleset, warnings=notes)


def _expected_base_workloads(trials: pd.DataFrame) -> list[str]:
    """AlgoPerf selects its 8 base workloads by name (and fails if one is missing); for AlgoPerf
    imports Pacer selects them too, a missing one scoring as a miss."""
    if "source" in trials.columns and trials["source"].astype(str).str.startswith("algoperf").all():
        from harness.algoperf_import import algoperf_targets

        table = algoperf_targets(str(trials["source"].iloc[0]).split(":", 1)[1])
        return [w for w, spec in table["workloads"].items() if spec["variant"] is None]
    return []

