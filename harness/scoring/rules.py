"""Scores from a results tree: times to target, performance profiles, benchmark scores and
their uncertainty.

The pipeline, each step a function on plain pandas/numpy data:

1. `trial_times`: per run, the submission time (and steps, examples) at the first eval that
   meets the validation target, and the same for the test target; a miss is inf.
2. `workload_times`: per submission and workload, the ruleset's rule: external tuning takes
   the median over studies of the minimum over trials, self-tuning the median over studies
   (of its single trial); misses are inf and take part in the median.
3. `apply_held_out`: AlgoPerf v0.5's held-out variant rule (optional).
4. `apply_cutoff`: times above 4x the fastest submission's become inf.
5. `ratios`: against the fastest submission or a named reference.
6. `performance_profiles` and `benchmark_scores` (closed form of the integral of the profile).

`score_frame` runs them all and adds bootstrap confidence intervals (resampling studies, and
trials within studies; none unless some submission/workload cell has 2 studies, see
`intervals_note`), the probability of ranking first, a geometric-mean speedup (and its
interval, from the same replicates) against a reference and a step-based score. AlgoPerf's own scoring code path is the other strategy
(`harness.scoring.algoperf_compat`; `harness.scoring.scorers` picks; docs/scoring.md lists every difference).
`check_comparable` refuses tables that do not compare (wall-clock times from different hardware,
one workload on two clocks, different targets) unless asked to mix them. Steps 3-6 work on
arrays with any leading batch shape, so the bootstrap scores all replicates at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import PacerUserError
from harness.core.store import load_results
from harness.scoring.algoperf_import import VERSIONS, algoperf_round

RULESETS = ("external", "self")
TIME_COLUMNS = {"time": "accumulated_submission_time", "steps": "global_step", "examples": "examples_seen"}
RUN_KEY = ["ruleset", "submission", "workload", "study", "trial"]
CLOCK_UNITS = {"wall": "wall-clock seconds", "normalized": "reference seconds (normalized clock)"}
"""What each `clock.kind` of a run record measures submission time in."""
CONTENDED_MEANING = "their machine was oversubscribed; their times may be inflated"
"""What a run flagged contended means, in the warnings that name such runs."""
MIN_STUDIES = 2
"""The bootstrap resamples studies, so a submission/workload cell needs this many to vary."""


@dataclass(frozen=True)
class ScoringRules:
    """How to turn times into scores. The defaults follow AlgoPerf's written rules.

    Attributes:
        max_ratio: r_max, the upper end of the profile integral (4 in AlgoPerf).
        cutoff: times above `cutoff` x the fastest become misses; None disables it.
        held_out: held-out variant workload ids; with `held_out_rule` the variant and its base
            workload must both be reached, and the variants leave the table.
        held_out_rule: whether to apply the held-out rule.
        reference: a submission whose times are the denominators of the ratios (None: the
            fastest submission per workload).
        num_workloads: n in rho = |{w: r <= tau}| / n; None counts the workloads scored.
        base_workloads: the workloads that are scored (an AlgoPerf round's base workloads);
            None: every workload but the held-out variants.
        bootstrap: number of bootstrap replicates (0 disables the intervals).
        confidence: the central interval's coverage.
        seed: the bootstrap's seed (results are reproducible).
    """

    max_ratio: float = 4.0
    cutoff: float | None = 4.0
    held_out: tuple[str, ...] = ()
    held_out_rule: bool = False
    reference: str | None = None
    num_workloads: int | None = None
    base_workloads: tuple[str, ...] | None = None
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_ratio <= 1:
            raise PacerUserError(f"max_ratio={self.max_ratio} must be > 1")
        if self.cutoff is not None and self.cutoff < 1:
            raise PacerUserError(f"cutoff={self.cutoff} must be >= 1 (or None)")
        if not 0 < self.confidence < 1:
            raise PacerUserError(f"confidence={self.confidence} must lie in (0, 1)")
        if self.bootstrap < 0:
            raise PacerUserError(f"bootstrap={self.bootstrap} must be >= 0")


@dataclass
class ScoreResult:
    """Everything `pacer score` prints and `pacer report` draws."""

    times: pd.DataFrame
    """submission x workload: the ruleset's time to target (inf = miss), before held-out/cut-off."""
    scored_times: pd.DataFrame
    """submission x workload: after the held-out rule and the cut-off, as the ratios see them."""
    ratios: pd.DataFrame
    scores: pd.Series
    trials: pd.DataFrame
    """One row per run: times/steps/examples to the validation and test targets."""
    step_scores: pd.Series | None = None
    score_ci: pd.DataFrame | None = None
    time_ci: pd.DataFrame | None = None
    p_rank1: pd.Series | None = None
    speedup: pd.Series | None = None
    """The geometric-mean speedup over `speedup_reference` (None without one)."""
    speedup_reference: str | None = None
    """The submission `speedup` is over, as the module function `speedup_reference` picks it."""
    speedup_ci: pd.DataFrame | None = None
    """speedup_lo / speedup_hi per submission: its percentile interval from the score intervals' replicates."""
    rules: ScoringRules = field(default_factory=ScoringRules)
    ruleset: str = "external"
    warnings: list[str] = field(default_factory=list)
    intervals_note: str | None = None
    """Why there are no intervals, or what they leave out; None when every cell was resampled."""
    rules_note: str | None = None
    """Which round's rules scored imported AlgoPerf runs (None: the rules as given)."""

    def clocks(self) -> dict[str, str]:
        """workload -> the clock kind its times use (records without one: wall)."""
        if "clock" not in self.trials:
            return dict.fromkeys(self.times.columns, "wall")
        kinds = self.trials.groupby("workload")["clock"].agg(lambda k: "/".join(sorted(set(k.fillna("wall").astype(str)))))
        return {str(w): str(kinds.get(w, "wall")) for w in self.times.columns}

    def reached(self) -> pd.Series:
        """Per submission: how many scored workloads' targets it reached."""
        return np.isfinite(self.scored_times).sum(axis=1)

    def reference_note(self) -> str | None:
        """With `rules.reference`, one line saying that the scores' ratios divide by its times (a
        score then measures closeness to it, not to the fastest); None under AlgoPerf's rule."""
        if self.rules.reference is None:
            return None
        return f"scores from ratios to {self.rules.reference}'s time per workload (--reference), not to the fastest's"

    def clock_note(self) -> str:
        """One line saying which clock the times use, e.g. "times in wall-clock seconds"."""
        by_kind: dict[str, list[str]] = {}
        for workload, kind in self.clocks().items():
            by_kind.setdefault(kind, []).append(workload)
        if len(by_kind) <= 1:
            return f"times in {clock_unit(next(iter(by_kind), 'wall'))}"
        return "times in " + "; ".join(f"{clock_unit(kind)} ({', '.join(ws)})" for kind, ws in sorted(by_kind.items()))

    def contended_runs(self) -> pd.DataFrame:
        """The scored runs flagged contended: run_dir, submission, workload, contention_reasons."""
        if "contended" not in self.trials:
            return self.trials.iloc[:0][["run_dir", "submission", "workload"]]
        flagged = self.trials[self.trials["contended"].eq(True).to_numpy()]
        columns = [c for c in ("run_dir", "submission", "workload", "contention_reasons") if c in flagged]
        return flagged[columns].sort_values("run_dir")

    def leaderboard(self) -> pd.DataFrame:
        """One row per submission, best first: score, its interval, P(rank 1), workloads reached."""
        board = pd.DataFrame({"score": self.scores})
        if self.score_ci is not None:
            board = board.join(self.score_ci)
        if self.p_rank1 is not None:
            board["p_rank1"] = self.p_rank1
        if self.step_scores is not None:
            board["step_score"] = self.step_scores
        if self.speedup is not None:
            board["speedup"] = self.speedup
        if self.speedup_ci is not None:
            board = board.join(self.speedup_ci)
        board["reached"] = self.reached()
        board["workloads"] = self.scored_times.shape[1]
        board = board.sort_values(["score", "reached"], ascending=False, kind="stable")
        board.insert(0, "rank", board["score"].rank(ascending=False, method="min").astype(int))
        board.index.name = "submission"
        return board


def speedup_reference(rules: ScoringRules, submissions: Sequence[str]) -> str | None:
    """The submission the geometric-mean speedups are over: `rules.reference`, else adamw (AlgoPerf's
    baseline) when the results hold it and another submission; None otherwise. Unlike
    `rules.reference`, the adamw default leaves the ratios (and so the scores) against the fastest."""
    reference = rules.reference or ("adamw" if "adamw" in submissions else None)
    return reference if reference is not None and len(submissions) > 1 else None


def speedup_text(row: pd.Series) -> str:
    """A `ScoreResult.leaderboard` row's geometric-mean speedup, with its interval when the board has one."""
    if not np.isfinite(row.speedup):
        return "n/a"
    interval = f" [{row.speedup_lo:.3f}, {row.speedup_hi:.3f}]" if "speedup_lo" in row else ""
    return f"{row.speedup:.3f}{interval}"


def clock_unit(kind: str) -> str:
    """What a clock kind's times are in; "normalized/wall" (a workload scored with --allow-mixed) is mixed."""
    return CLOCK_UNITS.get(kind, f"mixed clocks ({kind})")


# ---------------------------------------------------------------- 1. per trial


def trial_times(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: time, steps and examples at the first eval meeting the validation target, and
    the time at the first eval meeting the test target (inf / NaN when never met).

    `df` is `load_results`' frame; evals are taken in the order they were logged."""
    if df.empty:
        return pd.DataFrame(columns=[*RUN_KEY, "run_dir"])
    run_id, run_dirs = pd.factorize(df["run_dir"], sort=False)
    runs = df.drop_duplicates("run_dir").set_index("run_dir").loc[run_dirs]
    out = runs[[c for c in [*RUN_KEY, "base_workload", "variant", "target_metric", "target_direction", "validation_target", "test_target",
                            "max_runtime_sec", "step_hint", "fingerprint_id", "clock", "contended", "contention_reasons",
                            "hyperparameters", "status", "experiment", "source"] if c in runs.columns]].copy()
    out["num_evals"] = np.bincount(run_id, weights=df["global_step"].notna().to_numpy() if "global_step" in df else None, minlength=len(run_dirs)).astype(int)
    for split in ("validation", "test"):
        first = first_reaching(df, run_id, len(run_dirs), split)
        hit = first >= 0
        for name, column in TIME_COLUMNS.items():
            values = df[column].to_numpy(dtype=float) if column in df else np.full(len(df), np.nan)
            result = np.full(len(run_dirs), np.inf)
            result[hit] = values[first[hit]]
            out[f"{name}_to_{split}"] = result
    return out.reset_index(names="run_dir")


def first_reaching(df: pd.DataFrame, run_id: np.ndarray, n_runs: int, split: str) -> np.ndarray:
    """Row index of each run's first eval meeting its `split` target, -1 where none does."""
    value = np.full(len(df), np.nan)
    metrics = df["target_metric"].astype("string").fillna("")
    for metric in metrics.unique():
        column = f"{split}/{metric}"
        if column in df.columns:
            rows = (metrics == metric).to_numpy()
            value[rows] = df.loc[rows, column].to_numpy(dtype=float)
    target = pd.to_numeric(df[f"{split}_target"], errors="coerce").to_numpy(dtype=float)
    maximize = (df["target_direction"] == "max").to_numpy()
    with np.errstate(invalid="ignore"):
        reached = np.where(maximize, value >= target, value <= target) & np.isfinite(value)
    rows = np.flatnonzero(reached)
    first = np.full(n_runs, -1)
    owners, at = np.unique(run_id[rows], return_index=True)
    first[owners] = rows[at]
    return first


# ---------------------------------------------------------------- 2. per workload


def one_ruleset(df: pd.DataFrame, ruleset: str | None) -> pd.DataFrame:
    """The runs of `ruleset`, or of the one ruleset present (`pacer score` and `pacer compare`'s
    `--ruleset`). Raises PacerUserError for a mix without `ruleset`, or a ruleset with no runs."""
    ruleset = ruleset or infer_ruleset(df)
    present = sorted(set(df["ruleset"].dropna().astype(str)))
    if ruleset not in RULESETS or ruleset not in present:
        raise PacerUserError(f"no runs of ruleset {ruleset!r} (rulesets with runs: {', '.join(present)})")
    return df[df["ruleset"] == ruleset]


def infer_ruleset(trials: pd.DataFrame) -> str:
    """The one ruleset of the runs (scoring never mixes rulesets). Raises PacerUserError for a mix
    or an unknown ruleset."""
    rulesets = sorted(set(trials["ruleset"].dropna().astype(str)))
    if len(rulesets) != 1:
        raise PacerUserError(f"runs from {len(rulesets)} rulesets ({', '.join(rulesets) or 'none'}); pick one with --ruleset")
    if rulesets[0] not in RULESETS:
        raise PacerUserError(f"unknown ruleset {rulesets[0]!r} (valid: {', '.join(RULESETS)})")
    return rulesets[0]


def workload_times(trials: pd.DataFrame, ruleset: str, column: str = "time_to_validation") -> pd.DataFrame:
    """submission x workload times: median over studies of the min over trials (external) or of
    the single trial (self; with more than one, the fastest counts). Misses are inf."""
    if ruleset not in RULESETS:
        raise PacerUserError(f"unknown ruleset {ruleset!r} (valid: {', '.join(RULESETS)})")
    per_workload = study_times(trials, column).groupby(level=["submission", "workload"]).median()
    return per_workload.unstack("workload").sort_index(axis=1)


def study_times(trials: pd.DataFrame, column: str = "time_to_validation") -> pd.Series:
    """(submission, workload, study) -> the study's time: its fastest trial (external: the best of
    its trials; self: its one trial). Misses are inf."""
    return trials.groupby(["submission", "workload", "study"], sort=True)[column].min()


# ---------------------------------------------------------------- 3-6. table -> score (batched arrays)


def held_out_pairs(workloads: Sequence[str], base_of: dict[str, str], held_out: Sequence[str]) -> list[tuple[int, int]]:
    """(variant column, base column) index pairs for the held-out variants present."""
    index = {w: i for i, w in enumerate(workloads)}
    pairs = []
    for variant in held_out:
        base = base_of.get(variant)
        if variant in index and base in index:
            pairs.append((index[variant], index[base]))
    return pairs


def apply_held_out(t: np.ndarray, pairs: Sequence[tuple[int, int]], factor: float | None) -> np.ndarray:
    """Written rule: a submission keeps its base workload only if it reached the held-out variant
    within `factor` x the fastest submission on that variant, the fastest among those that
    reached the base workload (a miss on the base is a miss on the variant). `t` has shape
    (..., submissions, workloads); `factor` None: reaching the variant is enough."""
    t = t.copy()
    for v, b in pairs:
        variant = np.where(np.isfinite(t[..., b]), t[..., v], np.inf)
        if factor is not None:
            variant = np.where(variant > factor * variant.min(axis=-1, keepdims=True), np.inf, variant)
        t[..., v] = variant
        t[..., b] = np.where(np.isfinite(variant), t[..., b], np.inf)
    return t


def apply_cutoff(t: np.ndarray, factor: float | None) -> np.ndarray:
    """Times above `factor` x the fastest submission's (axis -2) become inf; exactly at it stays."""
    if factor is None:
        return t
    best = t.min(axis=-2, keepdims=True)
    return np.where(t > factor * best, np.inf, t)


def ratio_array(t: np.ndarray, reference: int | None) -> np.ndarray:
    """r = t / fastest (or / the reference row). A workload nobody (or the reference) reached
    gives inf to misses and 1 to the submissions that reached it."""
    denom = t.min(axis=-2, keepdims=True) if reference is None else t[..., reference : reference + 1, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = t / denom
    r = np.where(np.isfinite(denom), r, np.where(np.isfinite(t), 1.0, np.inf))
    return r


def closed_form_scores(r: np.ndarray, max_ratio: float, n: int) -> np.ndarray:
    """B = 1/(r_max-1) * integral_1^r_max rho(tau) dtau, exactly: rho is a step function, so each
    workload adds (r_max - max(r, 1)) / (r_max - 1) when r <= r_max."""
    contribution = np.clip((max_ratio - np.maximum(r, 1.0)) / (max_ratio - 1.0), 0.0, 1.0)
    contribution = np.where(np.isfinite(r), contribution, 0.0)
    return contribution.sum(axis=-1) / n


def profile_array(r: np.ndarray, taus: np.ndarray, n: int) -> np.ndarray:
    """rho_s(tau) for each tau: shape (..., submissions, len(taus))."""
    return (r[..., None, :] <= taus[:, None]).sum(axis=-1) / n


def trapezoid_scores(r: np.ndarray, max_ratio: float, n: int, points: int = 100) -> np.ndarray:
    """AlgoPerf's code: the trapezoid rule on `points` evenly spaced tau in [1, r_max], / (r_max - 1)."""
    taus = np.linspace(1.0, max_ratio, points)
    return np.trapezoid(profile_array(r, taus, n), taus, axis=-1) / (max_ratio - 1.0)


@dataclass(frozen=True)
class Table:
    """The submission x workload table as arrays, with what the batched steps need."""

    submissions: list[str]
    workloads: list[str]
    base_of: dict[str, str]

    def score_arrays(self, t: np.ndarray, rules: ScoringRules) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scored times, ratios, scores) for times `t` of shape (..., submissions, workloads)."""
        if rules.held_out_rule:
            t = apply_held_out(t, held_out_pairs(self.workloads, self.base_of, rules.held_out), rules.cutoff)
        scored = set(self.scored_workloads(rules))
        keep = [i for i, w in enumerate(self.workloads) if w in scored]
        t = apply_cutoff(t[..., keep], rules.cutoff)
        reference = self.submissions.index(rules.reference) if rules.reference is not None else None
        r = ratio_array(t, reference)
        n = rules.num_workloads or len(keep)
        return t, r, closed_form_scores(r, rules.max_ratio, n)

    def scored_workloads(self, rules: ScoringRules) -> list[str]:
        """The workloads that count: the round's base workloads, else all but the held-out variants."""
        if rules.base_workloads is not None:
            return [w for w in self.workloads if w in set(rules.base_workloads)]
        return [w for w in self.workloads if not (rules.held_out_rule and w in set(rules.held_out))]


def performance_profiles(ratios: pd.DataFrame, taus: np.ndarray | None = None, n: int | None = None) -> pd.DataFrame:
    """rho_s(tau) as a submission x tau frame (default: 301 taus from 1 to 4)."""
    taus = np.linspace(1.0, 4.0, 301) if taus is None else np.asarray(taus, dtype=float)
    values = profile_array(ratios.to_numpy(dtype=float), taus, n or ratios.shape[1])
    return pd.DataFrame(values, index=ratios.index, columns=taus)


# ---------------------------------------------------------------- guards


def check_comparable(df: pd.DataFrame, allow_mixed: bool) -> list[str]:
    """Refuse wall-clock runs from different hardware fingerprints, one workload timed by
    different clocks, or one workload with different targets, unless `allow_mixed`; then
    return the differences as warnings.

    Raises:
        PacerUserError: on the first difference (unless `allow_mixed`), or on a clock kind this
            scorer does not know (never lifted: its times have no known unit)."""
    problems = []
    runs = df.drop_duplicates("run_dir")
    clocks = runs["clock"].fillna("wall").astype(str) if "clock" in runs else pd.Series("wall", index=runs.index)
    unknown = sorted(set(clocks) - set(CLOCK_UNITS))
    if unknown:
        example = runs.loc[clocks == unknown[0], "run_dir"].iloc[0]
        raise PacerUserError(f"unknown clock kind {unknown[0]!r} in {example} (valid: {', '.join(CLOCK_UNITS)})")
    # Normalized times are in the calibration host's seconds, so only wall-clock times depend on the hardware.
    wall = runs[clocks == "wall"]
    prints = wall["fingerprint_id"].fillna("unknown").astype(str)
    if prints.nunique() > 1:
        groups = wall.groupby(prints)["run_dir"]
        detail = "; ".join(f"{fp}: {len(dirs)} runs, e.g. {dirs.iloc[0]}" for fp, dirs in groups)
        problems.append(f"wall-clock runs come from {prints.nunique()} hardware fingerprints ({detail})")
    for workload, kinds in clocks.groupby(runs["workload"]):
        if kinds.nunique() > 1:
            examples = runs.loc[kinds.index].groupby(kinds)["run_dir"]
            detail = "; ".join(f"{kind}: {len(dirs)} runs, e.g. {dirs.iloc[0]}" for kind, dirs in examples)
            problems.append(f"workload {workload} mixes {kinds.nunique()} clocks ({detail})")
    parts = [runs[c].astype(object).map(str) for c in ("target_metric", "target_direction", "validation_target", "test_target")]
    target_key = parts[0].str.cat(parts[1:], sep="|")
    for workload, keys in target_key.groupby(runs["workload"]):
        if keys.nunique() > 1:
            examples = runs.loc[keys.index].groupby(keys)["run_dir"].first()
            problems.append(f"workload {workload} has {keys.nunique()} different targets ({'; '.join(f'{k}: e.g. {d}' for k, d in examples.items())})")
    if problems and not allow_mixed:
        raise PacerUserError(problems[0] + "; pass --allow-mixed to score them together")
    return problems


def dedupe_reruns(trials: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One run per (ruleset, submission, workload, study, trial). Imported AlgoPerf logs hold
    reruns of one trial in folders AlgoPerf's runner renamed (`<name>-<date>`): keep the rerun
    that logged the most evals, the later experiment name on a tie, and report the others.

    Raises:
        PacerUserError: when two of Pacer's own records claim one cell (two experiments, or
            roots, that ran the same grid): which one counts is the user's decision, not the scorer's."""
    dup = trials.duplicated(RUN_KEY, keep=False)
    if not dup.any():
        return trials, []
    sources = trials["source"].fillna("").astype(str) if "source" in trials else pd.Series("", index=trials.index)
    native = trials[dup & ~sources.str.startswith("algoperf:")]
    if not native.empty:
        key = tuple(native.iloc[0][RUN_KEY])
        claims = trials.loc[(trials[RUN_KEY] == pd.Series(key, index=RUN_KEY)).all(axis=1), "run_dir"]
        raise PacerUserError(f"{len(claims)} run records claim the cell {'/'.join(map(str, key))}: {' and '.join(sorted(claims))}; "
                             "score one experiment at a time, or move the extra records aside")
    ordered = trials.sort_values([*RUN_KEY, "num_evals", "experiment"], kind="stable")
    kept = ordered.drop_duplicates(RUN_KEY, keep="last")
    dropped = trials.index.difference(kept.index)
    notes = [f"duplicate rerun of {'/'.join(str(v) for v in trials.loc[i, RUN_KEY])}: ignoring {trials.loc[i, 'run_dir']}" for i in dropped]
    return kept.sort_index(), notes


# ---------------------------------------------------------------- bootstrap


def trial_cube(trials: pd.DataFrame, submissions: list[str], workloads: list[str], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times as a (submission, workload, study, trial) array padded with NaN, with the number of
    studies per cell and of trials per study."""
    s_idx = pd.Index(submissions).get_indexer(trials["submission"])
    w_idx = pd.Index(workloads).get_indexer(trials["workload"])
    keep = (s_idx >= 0) & (w_idx >= 0)
    t = trials[keep]
    s_idx, w_idx = s_idx[keep], w_idx[keep]
    cell = s_idx * len(workloads) + w_idx
    study_codes = pd.DataFrame({"cell": cell, "study": t["study"].to_numpy()}).groupby("cell")["study"].rank(method="dense").to_numpy(dtype=int) - 1
    trial_codes = pd.DataFrame({"cell": cell, "study": study_codes, "x": 1}).groupby(["cell", "study"]).cumcount().to_numpy()
    shape = (len(submissions), len(workloads), study_codes.max() + 1 if len(t) else 1, trial_codes.max() + 1 if len(t) else 1)
    cube = np.full(shape, np.nan)
    cube[s_idx, w_idx, study_codes, trial_codes] = t[column].to_numpy(dtype=float)
    n_trials = (~np.isnan(cube)).sum(axis=-1)
    n_studies = (n_trials > 0).sum(axis=-1)
    return cube, n_studies, n_trials


def bootstrap_times(cube: np.ndarray, n_studies: np.ndarray, n_trials: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of the per-workload times: for each cell resample its studies with replacement,
    and within each drawn study its trials, then take min over trials and median over studies.
    Returns shape (replicates, submissions, workloads); cells without runs stay NaN."""
    S, W, K, _ = cube.shape
    studies = np.floor(rng.random((replicates, S, W, K)) * np.maximum(n_studies, 1)[None, :, :, None]).astype(int)
    per_study_trials = np.take_along_axis(np.broadcast_to(n_trials, (replicates, S, W, K)), studies, axis=-1)
    draws = np.floor(rng.random((replicates, S, W, K, cube.shape[3])) * np.maximum(per_study_trials, 1)[..., None]).astype(int)
    picked = cube[np.arange(S)[None, :, None, None, None], np.arange(W)[None, None, :, None, None], studies[..., None], draws]
    drawn = np.arange(cube.shape[3]) < per_study_trials[..., None]  # a study of n trials gets n draws
    best = np.where(drawn & ~np.isnan(picked), picked, np.inf).min(axis=-1)
    slot = np.arange(K)[None, None, None, :] < n_studies[None, :, :, None]
    best = np.where(slot, best, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(best, axis=-1)


def intervals_note(studies: pd.Series, replicates: int) -> str | None:
    """Why the leaderboard shows no intervals, or what they hold fixed; None when nothing is left out.

    `studies` holds the number of studies per (submission, workload) cell that has runs. The
    bootstrap resamples studies, so a cell with fewer than MIN_STUDIES never varies: with no
    cell above that, an interval would be one point and P(rank 1) a restatement of the ranks,
    so neither is shown; with some, the one-study cells are held fixed and the intervals
    understate the spread."""
    if replicates == 0:
        return "no intervals: bootstrap disabled (--bootstrap 0)"
    few = int((studies < MIN_STUDIES).sum())
    if few == len(studies):
        return f"no intervals: one study per submission and workload; a bootstrap needs at least {MIN_STUDIES}"
    if few:
        return (f"intervals hold {few} of {len(studies)} submission/workload cells fixed (one study each; a bootstrap needs at least {MIN_STUDIES}),"
                " so they understate the spread; those cells show no time interval")
    return None


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `confidence` percentile interval over axis 0 of `replicates` (lo, hi, each the
    shape of one replicate). No interpolation (`inverted_cdf`), so an infinite bound stays inf
    instead of becoming NaN."""
    tail = (1 - confidence) / 2
    return (np.quantile(replicates, tail, axis=0, method="inverted_cdf"),
            np.quantile(replicates, 1 - tail, axis=0, method="inverted_cdf"))


def bootstrap(trials: pd.DataFrame, table: Table, times: pd.DataFrame, rules: ScoringRules, speedup_over: str | None = None) -> dict[str, pd.DataFrame | pd.Series]:
    """Percentile intervals of each score, each per-workload time and, with `speedup_over` (a
    submission), each geometric-mean speedup over it (from the same replicates), and P(rank 1).

    A cell with fewer than MIN_STUDIES studies gets no time interval (it would be one point)."""
    cube, n_studies, n_trials = trial_cube(trials, table.submissions, table.workloads, "time_to_validation")
    rng = np.random.default_rng(rules.seed)
    kept = [table.workloads.index(w) for w in table.scored_workloads(rules)]
    budgets = workload_budgets(trials).reindex(table.workloads).to_numpy(dtype=float)[kept]
    scores, times_b, speedups = [], [], []
    for start in range(0, rules.bootstrap, 250):  # chunks bound the memory of the resampled cube
        t_b = bootstrap_times(cube, n_studies, n_trials, min(250, rules.bootstrap - start), rng)
        t_b = np.where(np.isnan(t_b), times.to_numpy(dtype=float)[None], t_b)
        times_b.append(t_b)
        scores.append(table.score_arrays(t_b, rules)[2])
        if speedup_over is not None:
            speedups.append(speedup_array(t_b[..., kept], table.submissions.index(speedup_over), budgets))
    score_b, t_all = np.concatenate(scores), np.concatenate(times_b)
    top = score_b == score_b.max(axis=1, keepdims=True)
    p_rank1 = (top / top.sum(axis=1, keepdims=True)).mean(axis=0)
    index = pd.Index(table.submissions, name="submission")
    score_lo, score_hi = percentile_interval(score_b, rules.confidence)
    score_ci = pd.DataFrame({"score_lo": score_lo, "score_hi": score_hi}, index=index)
    time_lo, time_hi = (pd.DataFrame(bound, index=index, columns=table.workloads) for bound in percentile_interval(t_all, rules.confidence))
    time_ci = pd.concat({"lo": time_lo.stack(), "hi": time_hi.stack()}, axis=1)
    time_ci.index.names = ["submission", "workload"]
    resampled = pd.DataFrame(n_studies >= MIN_STUDIES, index=index, columns=table.workloads).stack()
    time_ci = time_ci[resampled.reindex(time_ci.index, fill_value=False).to_numpy()]
    parts: dict[str, pd.DataFrame | pd.Series] = {"score_ci": score_ci, "time_ci": time_ci, "p_rank1": pd.Series(p_rank1, index=index, name="p_rank1")}
    if speedups:
        speedup_lo, speedup_hi = percentile_interval(np.concatenate(speedups), rules.confidence)
        parts["speedup_ci"] = pd.DataFrame({"speedup_lo": speedup_lo, "speedup_hi": speedup_hi}, index=index)
    return parts


# ---------------------------------------------------------------- extras


def workload_budgets(trials: pd.DataFrame) -> pd.Series:
    """Per workload: the largest `max_runtime_sec` its runs recorded (s), the budget a miss is charged."""
    return trials.groupby("workload")["max_runtime_sec"].max()


def misses_as_budget(t: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Times `t` (..., workloads) with each miss (inf) counted as its workload's budget + 1 s, as
    AlgoPerf's compute_speedups does, so that a miss weighs in a ratio instead of making it 0 or inf."""
    return np.where(np.isinf(t), np.asarray(budgets, dtype=float) + 1.0, t)


def speedup_array(t: np.ndarray, reference: int, budgets: np.ndarray) -> np.ndarray:
    """Per submission, the geometric mean over workloads of t_reference / t_submission (> 1 is
    faster), misses counted by `misses_as_budget`. `t` has shape (..., submissions, workloads);
    `reference` is a row index; returns shape (..., submissions). A workload whose ratio is
    undefined (a miss on a workload without a recorded budget) is left out of the mean."""
    filled = misses_as_budget(t, budgets)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-undefined row is NaN, said by the value itself
        logs = np.log(filled[..., reference : reference + 1, :]) - np.log(filled)
        return np.exp(np.nanmean(logs, axis=-1))


def geometric_mean_speedup(times: pd.DataFrame, reference: str, budgets: pd.Series) -> pd.Series:
    """Per submission: the geometric mean over workloads of t_reference / t_submission (> 1 is
    faster), a miss counted as the workload's budget + 1 s (as AlgoPerf's compute_speedups)."""
    if reference not in times.index:
        raise PacerUserError(f"unknown reference submission {reference!r} (valid: {', '.join(times.index)})")
    per_workload = budgets.reindex(times.columns).to_numpy(dtype=float)
    speedup = speedup_array(times.to_numpy(dtype=float), list(times.index).index(reference), per_workload)
    return pd.Series(speedup, index=times.index, name="speedup")


def score_frame(df: pd.DataFrame, rules: ScoringRules | None = None, *, allow_mixed: bool = False, ruleset: str | None = None) -> ScoreResult:
    """Score a `load_results` frame with Pacer's rules (AlgoPerf's written rules, exactly)."""
    rules = rules or ScoringRules()
    if df.empty:
        raise PacerUserError("no runs to score")
    notes = check_comparable(df, allow_mixed)
    notes += check_held_out_names(rules.held_out, set(df["workload"].astype(str)))
    trials, dup_notes = dedupe_reruns(trial_times(df))
    ruleset = ruleset or infer_ruleset(trials)
    rules, rules_note = round_rules(trials, rules)
    times, missing_note = misses_for_missing_cells(workload_times(trials, ruleset))
    if rules.reference is not None and rules.reference not in times.index:
        raise PacerUserError(f"reference submission {rules.reference!r} has no {ruleset} runs here (submissions with {ruleset} runs: {', '.join(times.index)})")
    base_of = trials.drop_duplicates("workload").set_index("workload")["base_workload"].fillna("").to_dict()
    table = Table(list(times.index), list(times.columns), base_of)
    scored, r, scores = table.score_arrays(times.to_numpy(dtype=float), rules)
    kept = table.scored_workloads(rules)
    result = ScoreResult(
        times=times, scored_times=pd.DataFrame(scored, index=times.index, columns=kept),
        ratios=pd.DataFrame(r, index=times.index, columns=kept), scores=pd.Series(scores, index=times.index, name="score"),
        trials=trials, rules=rules, ruleset=ruleset, warnings=notes + dup_notes + ([missing_note] if missing_note else []), rules_note=rules_note)
    step_times = workload_times(trials, ruleset, "steps_to_validation").reindex(index=times.index, columns=times.columns).fillna(np.inf)
    result.step_scores = pd.Series(table.score_arrays(step_times.to_numpy(dtype=float), rules)[2], index=times.index, name="step_score")
    studies = trials.groupby(["submission", "workload"])["study"].nunique()
    result.intervals_note = intervals_note(studies, rules.bootstrap)
    result.speedup_reference = speedup_reference(rules, list(times.index))
    if rules.bootstrap and (studies >= MIN_STUDIES).any():
        parts = bootstrap(trials, table, times, rules, result.speedup_reference)
        result.score_ci, result.time_ci, result.p_rank1 = parts["score_ci"], parts["time_ci"], parts["p_rank1"]
        result.speedup_ci = parts.get("speedup_ci")
    if result.speedup_reference is not None:
        result.speedup = geometric_mean_speedup(times[kept], result.speedup_reference, workload_budgets(trials))
        drop_unmeasured_speedups(result)
    return result


def drop_unmeasured_speedups(result: ScoreResult) -> None:
    """Where neither a submission nor the reference reached any scored target, every workload's
    ratio is 1 by construction (two misses, both charged the budget): not a measured tie. Such
    speedups (and their intervals) become NaN, printed "n/a"."""
    reached = result.reached()
    if result.speedup is None or reached[result.speedup_reference] > 0:
        return
    unmeasured = (reached == 0) & (reached.index != result.speedup_reference)
    result.speedup[unmeasured] = np.nan
    if result.speedup_ci is not None:
        result.speedup_ci.loc[unmeasured[unmeasured].index] = np.nan


def misses_for_missing_cells(times: pd.DataFrame, examples: int = 10) -> tuple[pd.DataFrame, str | None]:
    """A submission x workload cell with no run at all (an unfinished sweep, merged roots, a
    variant only some ran) becomes a miss (inf), so that it can never make the column's fastest
    time NaN and hand everyone else ratio 1; and one warning line lists the cells."""
    missing = times.isna().stack()
    cells = [f"{s}/{w}" for (s, w), hole in missing.items() if hole]
    if not cells:
        return times, None
    shown = ", ".join(cells[:examples]) + (", ..." if len(cells) > examples else "")
    return times.fillna(np.inf), f"{len(cells)} submission/workload cell(s) have no run and count as misses: {shown}"


def check_held_out_names(held_out: Sequence[str], workloads: set[str]) -> list[str]:
    """Raise PacerUserError for a held-out name that no run has and no AlgoPerf round draws (a
    typo would otherwise turn the held-out rule off for that variant in silence). A round's
    variant may have no run: AlgoPerf then counts it as missed. Returns a warning when no
    held-out name has a run at all (e.g. a round's draw on results of another suite)."""
    drawn = {variant for version in VERSIONS for variant in algoperf_round(version).held_out}
    unknown = [name for name in held_out if name not in workloads and name not in drawn]
    if unknown:
        raise PacerUserError(f"held-out workload {unknown[0]!r} has no runs to score (workloads with runs: {', '.join(sorted(workloads))})")
    if held_out and not set(held_out) & workloads:
        return [f"no held-out workload ({', '.join(held_out)}) has a run here, so the held-out rule changes nothing"]
    return []


def round_rules(trials: pd.DataFrame, rules: ScoringRules) -> tuple[ScoringRules, str | None]:
    """Runs imported from one AlgoPerf round (`source` "algoperf:<version>" on every run) are
    scored by that round's written rules: its base workloads only, n = its number of base
    workloads, and its held-out draw with the held-out rule (v0.5) -- unless `rules` already
    names held-out variants. Returns the rules and a note saying which round's (None: as given)."""
    sources = set(trials["source"].dropna().astype(str)) if "source" in trials else set()
    if len(sources) != 1 or not next(iter(sources)).startswith("algoperf:") or trials["source"].isna().any() or rules.held_out:
        return rules, None
    round_ = algoperf_round(next(iter(sources)).split(":", 1)[1])
    rules = replace(rules, held_out=round_.held_out, held_out_rule=bool(round_.held_out), base_workloads=round_.base_workloads,
                    num_workloads=rules.num_workloads or round_.num_base_workloads)
    held_out = f"held-out variants {', '.join(round_.held_out)} (each within {rules.cutoff or 'any'}x of the fastest that reached its base)" if round_.held_out else "no held-out variants"
    return rules, f"rules: AlgoPerf {round_.version}'s written rules: {round_.num_base_workloads} base workloads, {held_out}; other variants are not scored"


def load_roots(roots: Sequence[Path], cache: bool = True) -> pd.DataFrame:
    """`load_results` over results roots (through the Parquet cache), checking they exist."""
    for root in roots:
        if not Path(root).exists():
            raise PacerUserError(f"results root {root} does not exist")
        if not Path(root).is_dir():
            raise PacerUserError(f"results root {root} is not a folder")
    df = load_results(*roots, cache=cache)
    if df.empty:
        raise PacerUserError(f"no run records (run.json) under {', '.join(map(str, roots))}")
    return df


def contention_warning(flagged: pd.DataFrame, examples: int = 3) -> str | None:
    """One line naming how many scored runs were flagged contended and up to `examples` of their folders."""
    if flagged.empty:
        return None
    shown = ", ".join(flagged["run_dir"].astype(str).iloc[:examples]) + (", ..." if len(flagged) > examples else "")
    runs = "1 run was" if len(flagged) == 1 else f"{len(flagged)} runs were"
    return f"{runs} flagged contended ({CONTENDED_MEANING}): {shown}"
