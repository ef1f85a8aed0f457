"""The two ways to score a results tree, picked by name (`pacer score --compat`):

* Pacer's (`harness.scoring.rules.score_frame`): AlgoPerf's written rules, closed form, with
  bootstrap intervals;
* AlgoPerf's own code path (`harness.scoring.algoperf_compat.score_algoperf`), departures
  included (docs/scoring.md lists them), without intervals.

Both add the same warning when scored runs were flagged contended."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from harness.core.errors import PacerUserError
from harness.scoring.algoperf_compat import score_algoperf
from harness.scoring.rules import ScoreResult, ScoringRules, contention_warning, load_roots, one_ruleset, score_frame

Scorer = Callable[..., ScoreResult]
"""`scorer(df, rules, *, allow_mixed) -> ScoreResult`."""


def _score_algoperf(df: pd.DataFrame, rules: ScoringRules | None, *, allow_mixed: bool) -> ScoreResult:
    result = score_algoperf(df, rules, allow_mixed=allow_mixed)
    result.intervals_note = "no intervals: AlgoPerf's scoring code has none (score without --compat for them)"
    return result


SCORERS: dict[str | None, Scorer] = {None: score_frame, "algoperf": _score_algoperf}
"""`--compat` value -> scorer (None: Pacer's)."""


def score_results(df: pd.DataFrame, rules: ScoringRules | None = None, *, allow_mixed: bool = False, compat: str | None = None) -> ScoreResult:
    """Score a loaded frame with Pacer's rules, or with AlgoPerf's code path (`compat="algoperf"`).
    Raises PacerUserError for another `compat`."""
    if compat not in SCORERS:
        raise PacerUserError(f"unknown compat mode {compat!r} (valid: {', '.join(k for k in SCORERS if k)})")
    result = SCORERS[compat](df, rules, allow_mixed=allow_mixed)
    warning = contention_warning(result.contended_runs())
    if warning:
        result.warnings.append(warning)
    return result


def score_roots(roots: Sequence[Path], rules: ScoringRules | None = None, *, allow_mixed: bool = False, compat: str | None = None, cache: bool = True,
                ruleset: str | None = None) -> ScoreResult:
    """Load results trees (through the Parquet cache) and score them: the runs of `ruleset`, or
    of the one ruleset they hold (a mix without `ruleset` is refused by `one_ruleset`)."""
    return score_results(one_ruleset(load_roots(roots, cache), ruleset), rules, allow_mixed=allow_mixed, compat=compat)
