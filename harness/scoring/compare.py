"""`pacer compare ROOT X Y`: is submission X faster than Y on this suite, with statistics a reader can trust.

The ratio is **t_Y / t_X**, so > 1 means X is faster: the same direction as the leaderboard's
geometric-mean speedup (t_reference / t_submission) with Y as the reference.

* **Pairs.** Per workload, study i of X is paired with study i of Y (the same study index, so
  the same seeds where the sweep tied them to the study). A study's time is the fastest of its
  trials (the external ruleset's best trial; a self-tuning study has one). A study only one side
  has is left out, with a warning line.
* **Misses** count as the workload's budget + 1 s, as in `rules.geometric_mean_speedup` (and
  AlgoPerf's compute_speedups); both sides missing is ratio 1.
* **Per workload**: the geometric mean of the per-study ratios; its interval is Student's t
  on the mean log ratio of the paired studies (n - 1 degrees of freedom); the one-sided
  p-value for "X is faster" is the exact paired permutation test: each study's log ratio may
  flip sign under "no difference", and p is the share of the 2^n sign arrangements whose mean
  log ratio is at least the observed one (enumerated when 2^n <= 2^16, else a seeded Monte-Carlo
  of 2^16 arrangements, p = (1 + hits) / (1 + 2^16)).
* **Overall**: the geometric mean over workloads of the per-workload geometric means; its
  interval is Student's t on the mean over workloads of their mean log ratios (each workload's
  variance from its own studies; Welch-Satterthwaite degrees of freedom); its test flips every
  (workload, study) pair.
* **Why t, not a bootstrap**: a percentile bootstrap of 3 paired studies covered the true ratio
  in 88% of 2,000 simulated experiments (5 lognormal workloads x 3 studies), below its 95%: it
  has (n - 1)/n of the mean's variance and normal, not t, tails. Log times that are about
  normal make the t interval exact per workload (tests/test_compare.py checks its coverage).

**The smallest p-value n studies can give is 1/2^n**, n counting the pairs whose times differ
(a pair of equal times, e.g. both missed, flips to itself): 0.125 with 3 studies, 0.031 with
5, 0.001 with 10. With 3 studies a workload can never be "significant at 5%" on its own; the
overall test, over every (workload, study) pair, can.

**A ratio with misses is a bound, not a measurement**: a miss counts as the budget + 1 s, so
against a submission that missed every study the ratio says "at least this much faster"; both
missing gives 1 with no spread, which means "not measured", not "equal". The `misses` column
counts them.

**Not the leaderboard's speedup**: that one is the ratio of per-workload median times (AlgoPerf's
time per workload), unpaired; this one is the geometric mean of per-study ratios, paired. With
few studies and misses the two can differ, even in direction; this one is the test of "X is
faster".

No cut-off and no held-out rule apply here: they depend on every submission, a comparison on two.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from harness.core.errors import PacerUserError
from harness.scoring.rules import (
    CONTENDED_MEANING,
    check_comparable,
    dedupe_reruns,
    load_roots,
    misses_as_budget,
    one_ruleset,
    study_times,
    trial_times,
    workload_budgets,
)

MIN_PAIRED_STUDIES = 3
"""Fewer paired studies give a p-value no smaller than 1/4 and an interval with one degree of freedom."""
EXACT_LOG2 = 16
"""Enumerate the 2^n sign arrangements up to n = 16; above, draw 2^16 of them."""
NOT_THE_SPEEDUP = "not the leaderboard's speedup (a ratio of median times per workload, unpaired): with few studies and misses the two can differ, even in direction"
"""Said wherever compare's ratios appear beside the leaderboard's speedup column."""
MISSES_NOTE = ("a miss counts as the workload's budget + 1 s (as the geometric-mean speedup), so a ratio with misses is a bound, "
               "not a measurement; both missing is ratio 1: not measured, not equal")


@dataclass
class Comparison:
    """`compare_frame`'s answer.

    `workloads` has one row per workload (index), and `overall` the same fields for the suite:
    studies (paired studies; overall: every pair), ratio (geometric mean of t_Y / t_X, > 1: X
    faster), lo / hi (Student-t interval of the ratio; module docstring), p
    (one-sided permutation p-value of "X is faster"), min_p (1/2^n, n the pairs whose times
    differ: the smallest p possible),
    exact (whether p enumerated every arrangement), misses (per-study times that were misses)."""

    x: str
    y: str
    ruleset: str
    workloads: pd.DataFrame
    overall: pd.Series
    seed: int
    confidence: float
    warnings: list[str] = field(default_factory=list)


def compare_roots(roots: Sequence[Path], x: str, y: str, *, ruleset: str | None = None, seed: int = 0,
                  confidence: float = 0.95, allow_mixed: bool = False, cache: bool = True) -> Comparison:
    """Load results trees and compare X with Y (`compare_frame`); X == Y is refused before loading."""
    check_distinct(x, y)
    return compare_frame(load_roots(roots, cache), x, y, ruleset=ruleset, seed=seed,
                         confidence=confidence, allow_mixed=allow_mixed)


def compare_frame(df: pd.DataFrame, x: str, y: str, *, ruleset: str | None = None, seed: int = 0,
                  confidence: float = 0.95, allow_mixed: bool = False) -> Comparison:
    """Compare submission `x` with `y` on a `load_results` frame (module docstring: the statistics).

    Raises:
        PacerUserError: (one line, before any statistic) x == y; runs of several rulesets and no
            `ruleset`; an unknown ruleset or submission (listing the valid ones); a workload with
            fewer than MIN_PAIRED_STUDIES paired studies (naming it and the count); the
            hardware/clock/target guards of `rules.check_comparable` unless `allow_mixed`."""
    check_distinct(x, y)
    df = one_ruleset(df, ruleset)
    check_submissions(df, x, y)
    pair_df = df[df["submission"].isin([x, y])]
    notes = check_comparable(pair_df, allow_mixed)
    trials, dup_notes = dedupe_reruns(trial_times(pair_df))
    per_study = paired_study_times(trials, x, y)
    check_enough_studies(per_study, x, y)
    pairs = per_study.dropna()
    budgets = workload_budgets(trials).reindex(pairs.index.get_level_values("workload")).to_numpy(dtype=float)
    log_ratio = np.log(misses_as_budget(pairs[y].to_numpy(), budgets)) - np.log(misses_as_budget(pairs[x].to_numpy(), budgets))
    per_pair = pd.DataFrame({"log_ratio": log_ratio, "misses": np.isinf(pairs).sum(axis=1).to_numpy()}, index=pairs.index)
    workloads, overall = statistics(per_pair, np.random.default_rng(seed), confidence)
    return Comparison(x, y, str(pair_df["ruleset"].iloc[0]), workloads, overall, seed, confidence,
                      notes + dup_notes + unpaired_warnings(per_study, x, y) + contended_warnings(trials, x, y))


def statistics(per_pair: pd.DataFrame, rng: np.random.Generator, confidence: float) -> tuple[pd.DataFrame, pd.Series]:
    """Per workload and overall (`Comparison`'s fields) from one row per (workload, study) pair:
    its log ratio and how many of its two times were misses."""
    groups = per_pair.groupby(level="workload")
    values = [group["log_ratio"].to_numpy() for _, group in groups]
    rows = [summary([v], rng, confidence) for v in values]
    misses = groups["misses"].sum()
    workloads = pd.DataFrame(rows, index=misses.index).assign(misses=misses)
    overall = pd.Series(summary(values, rng, confidence) | {"misses": int(per_pair["misses"].sum())})
    return workloads, overall


# ---------------------------------------------------------------- refusals


def check_distinct(x: str, y: str) -> None:
    if x == y:
        raise PacerUserError(f"compare {x} with another submission, not with itself")


def check_submissions(df: pd.DataFrame, x: str, y: str) -> None:
    """Both names must have runs here; the message lists the submissions that do."""
    valid = sorted(set(df["submission"].astype(str)))
    for name in (x, y):
        if name not in valid:
            raise PacerUserError(f"no runs of submission {name!r} in these results (submissions with runs: {', '.join(valid)})")


def check_enough_studies(per_study: pd.DataFrame, x: str, y: str) -> None:
    """Every workload needs MIN_PAIRED_STUDIES paired studies (a workload only one side ran has 0)."""
    counts = per_study.notna().all(axis=1).groupby(level="workload").sum()
    few = counts[counts < MIN_PAIRED_STUDIES]
    if len(few):
        workload, count = few.index[0], int(few.iloc[0])
        raise PacerUserError(f"workload {workload} has {count} paired studies of {x} and {y}; a comparison needs at least {MIN_PAIRED_STUDIES}"
                             " (the smallest p-value n studies can give is 1/2^n)")


# ---------------------------------------------------------------- pairs and statistics


def paired_study_times(trials: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """(workload, study) x [x, y]: each study's time (`rules.study_times`; inf: a miss; NaN: that
    side has no such study)."""
    return study_times(trials).unstack("submission").reindex(columns=[x, y])


def unpaired_warnings(per_study: pd.DataFrame, x: str, y: str) -> list[str]:
    """One line per workload with studies only one side has (they are left out)."""
    lines = []
    for workload, studies in per_study.groupby(level="workload"):
        lone = studies[studies.isna().any(axis=1)]
        if len(lone):
            sides = "; ".join(f"only {name} has {', '.join(str(k) for k in lone.index.get_level_values('study')[lone[name].notna()])}"
                              for name in (x, y) if lone[name].notna().any())
            lines.append(f"{workload}: studies without a counterpart are left out ({sides})")
    return lines


def contended_warnings(trials: pd.DataFrame, x: str, y: str) -> list[str]:
    """One line per side with runs flagged contended (their times may be inflated), with the count."""
    if "contended" not in trials:
        return []
    lines = []
    for name in (x, y):
        runs = trials[trials["submission"] == name]
        flagged = int(runs["contended"].eq(True).sum())
        if flagged:
            lines.append(f"{flagged} of {name}'s {len(runs)} runs were flagged contended ({CONTENDED_MEANING})")
    return lines


def mean_log_interval(groups: Sequence[np.ndarray], confidence: float) -> tuple[float, float, float]:
    """The mean over `groups` (each a workload's paired log ratios, >= 2 of them) of their means,
    and its Student-t interval: a group's mean has variance s^2 / n (s: the sample standard
    deviation of its n log ratios), every group weighs the same, and the degrees of freedom are
    Welch-Satterthwaite's (n - 1 for one group). Returns (mean, lo, hi) of the log ratio; a zero
    spread gives lo = hi = mean."""
    k = len(groups)
    mean = float(np.mean([g.mean() for g in groups]))
    parts = np.array([g.var(ddof=1) / len(g) for g in groups]) / k**2  # each group's share of the variance of `mean`
    if parts.sum() <= 0:
        return mean, mean, mean
    dof = parts.sum() ** 2 / sum(part**2 / (len(g) - 1) for part, g in zip(parts, groups, strict=True))
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, dof)) * math.sqrt(parts.sum())
    return mean, mean - half, mean + half


def summary(groups: Sequence[np.ndarray], rng: np.random.Generator, confidence: float) -> dict[str, object]:
    """The ratio, its interval and p of the log ratios `groups` (one array per workload; the
    statistic is the mean over workloads of their mean log ratios)."""
    mean, lo, hi = mean_log_interval(groups, confidence)
    values = np.concatenate(groups)
    weights = np.concatenate([np.full(len(g), 1 / (len(g) * len(groups))) for g in groups])
    p, exact = sign_flip_p(values, weights, rng)
    return {"studies": len(values), "ratio": math.exp(mean), "lo": math.exp(lo), "hi": math.exp(hi), "p": p,
            "min_p": 2.0 ** -int(np.count_nonzero(values)), "exact": exact}


def sign_flip_p(values: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> tuple[float, bool]:
    """One-sided p of the paired permutation test: the share of sign arrangements s with
    sum(w s v) >= sum(w v). Exact (every one of the 2^n) when n <= EXACT_LOG2, else 2^16 drawn
    ones with the observed one counted in (1 + hits) / (1 + draws). Returns (p, exact)."""
    n = len(values)
    if n <= EXACT_LOG2:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = rng.choice(np.array([-1, 1]), size=(2**EXACT_LOG2, n))
    contributions = weights * values
    observed = contributions.sum()
    tolerance = 1e-12 * max(np.abs(contributions).sum(), 1.0)  # a tie (e.g. a zero log ratio flipped) must count as >=
    hits = int((signs @ contributions >= observed - tolerance).sum())
    return (hits / len(signs), True) if n <= EXACT_LOG2 else ((1 + hits) / (1 + len(signs)), False)


# ---------------------------------------------------------------- output


def _interval(row: pd.Series) -> str:
    return f"[{row.lo:.3f}, {row.hi:.3f}]"


def probability_text(p: float) -> str:
    """A p-value in 4 decimals, or in scientific notation below 0.001 (1/2^n gets that small)."""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def describe(comparison: Comparison) -> list[str]:
    """The lines above the terminal table that say what the numbers mean."""
    c = comparison
    interval = f"{c.confidence:.0%} Student-t interval over paired studies (overall: Welch-Satterthwaite)"
    return [f"{c.x} against {c.y} ({c.ruleset} ruleset): ratio = t_{c.y} / t_{c.x} per paired study, > 1: {c.x} is faster;"
            " geometric mean over studies (overall: over workloads)",
            f"{interval}; p: one-sided paired permutation test of '{c.x} is faster' (min p = 1/2^n, n: the pairs whose times differ)",
            MISSES_NOTE,
            NOT_THE_SPEEDUP]


def format_comparison(comparison: Comparison) -> str:
    """The terminal table: one line per workload, then the overall line, then the warnings."""
    rows = pd.concat([comparison.workloads, comparison.overall.to_frame("overall").T])
    width = max(12, *(len(str(w)) for w in rows.index))
    header = f"{'workload':<{width}} {'studies':>7} {'ratio':>7}  {'95% CI' if comparison.confidence == 0.95 else 'interval':<17} {'p':>8} {'min p':>8} {'misses':>6}"
    lines = [*describe(comparison), "", header, "-" * len(header)]
    for name, row in rows.iterrows():
        p = probability_text(row.p) + ("" if row.exact else "~")
        lines.append(f"{name!s:<{width}} {int(row.studies):>7} {row.ratio:>7.3f}  {_interval(row):<17} {p:>8} {probability_text(row.min_p):>8} {int(row.misses):>6}")
    if not comparison.overall.exact:
        lines.append(f"~: p from {2**EXACT_LOG2:,} random sign arrangements (more than {EXACT_LOG2} pairs: too many of the 2^n to enumerate)")
    return "\n".join(lines + [f"warning: {w}" for w in comparison.warnings])


def _row_json(row: pd.Series) -> dict[str, object]:
    return {"studies": int(row.studies), "ratio": float(row.ratio), "interval": [float(row.lo), float(row.hi)],
            "p": float(row.p), "min_p": float(row.min_p), "p_exact": bool(row.exact), "misses": int(row.misses)}


def comparison_json(comparison: Comparison) -> dict[str, object]:
    """What `pacer compare --format json` prints."""
    c = comparison
    return {"x": c.x, "y": c.y, "ruleset": c.ruleset, "ratio": f"t_{c.y} / t_{c.x} (> 1: {c.x} is faster)", "misses": MISSES_NOTE,
            "interval": "student-t", "seed": c.seed, "confidence": c.confidence,
            "workloads": {str(w): _row_json(row) for w, row in c.workloads.iterrows()}, "overall": _row_json(c.overall), "warnings": c.warnings}


def compare(roots: Sequence[Path], x: str, y: str, *, ruleset: str | None, seed: int, allow_mixed: bool, output_format: str) -> int:
    """`pacer compare`: print the comparison of X with Y (a table, or JSON); exit code 0."""
    comparison = compare_roots(roots, x, y, ruleset=ruleset, seed=seed, allow_mixed=allow_mixed)
    print(json.dumps(comparison_json(comparison), indent=2) if output_format == "json" else format_comparison(comparison))
    return 0
