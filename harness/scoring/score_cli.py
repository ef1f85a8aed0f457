"""`pacer score` and `pacer report` over harness.scoring.scorers / harness.scoring.report, from the
arguments harness/cli.py read: the tables, the leaderboard and the report's paths."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.core.errors import PacerUserError
from harness.core.store import check_output_folder
from harness.scoring.rules import ScoreResult, ScoringRules, speedup_text
from harness.scoring.scorers import score_roots


def score(roots: Sequence[Path], rules: ScoringRules, *, compat: str | None, allow_mixed: bool, cache: bool, out: Path | None, output_format: str,
          ruleset: str | None = None) -> int:
    """`pacer score`: score the results trees `roots` (the runs of `ruleset`, needed when they hold
    several) under `rules` (AlgoPerf's own code with `compat="algoperf"`), write the times and
    scores tables into `out` (None: `roots[0]/scores`) and print the leaderboard as a table (then
    where the tables went) or, with `output_format="json"`, as `as_json`. Returns 0.

    Raises PacerUserError (one line) when `out` cannot be written, before any record is read, or
    when the trees hold no run records, runs of several rulesets and no `ruleset`, or runs that cannot
    be scored together (unless `allow_mixed`)."""
    out = out or roots[0] / "scores"
    check_output_folder(out, "score tables")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_roots(roots, rules, allow_mixed=allow_mixed, compat=compat, cache=cache, ruleset=ruleset)
    result.warnings.extend(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    write_tables(result, out)
    if output_format == "json":
        print(json.dumps(as_json(result, compat), indent=2, sort_keys=True))
    else:
        print(format_table(result, compat) + f"\ntables (times, scores; CSV and Parquet, replaced on each run): {out}")
    return 0


def report(roots: Sequence[Path], rules: ScoringRules, *, compat: str | None, allow_mixed: bool, cache: bool, out: Path, log_x: bool,
           ruleset: str | None = None) -> int:
    """`pacer report`: write the HTML report and the Markdown leaderboard of the results trees
    `roots` into `out` (a log-scaled tau axis with `log_x`; only the runs of `ruleset` when given)
    and print their paths. Returns 0.

    Raises PacerUserError (one line) when `out` cannot be written, before any record is read."""
    check_output_folder(out, "the report")
    from harness.scoring.report import write_report

    path = write_report(roots, out, rules=rules, compat=compat, allow_mixed=allow_mixed, log_x=log_x, cache=cache, ruleset=ruleset)
    print(f"report: {path}\nleaderboard: {path.with_name('leaderboard.md')}")
    return 0


def write_tables(result: ScoreResult, out: Path) -> None:
    """times.csv/.parquet (submission x workload, inf = miss) and scores.csv/.parquet."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        board = result.leaderboard()
        times = result.times.rename_axis(index="submission", columns=None)
        for name, frame in (("times", times), ("scores", board)):
            frame.to_csv(out / f"{name}.csv")
            frame.to_parquet(out / f"{name}.parquet")
    except OSError as e:
        raise PacerUserError(f"cannot write score tables to {out}: {e.strerror}") from None


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def as_json(result: ScoreResult, compat: str | None) -> dict[str, object]:
    """The JSON `pacer score --format json` prints; misses (inf) are null, and so are `score_ci`
    and `p_rank1` when there are no intervals (`intervals_note` says why). With `--reference`:
    `speedup` and `speedup_ci` ([lo, hi] per submission, null without intervals)."""
    out: dict[str, object] = {
        "scores": {s: float(v) for s, v in result.scores.items()},
        "step_scores": {s: float(v) for s, v in result.step_scores.items()} if result.step_scores is not None else None,
        "times": {s: {w: _finite(v) for w, v in row.items()} for s, row in result.times.iterrows()},
        "ruleset": result.ruleset, "compat": compat, "warnings": result.warnings,
        "score_ci": None, "p_rank1": None, "intervals_note": result.intervals_note, "rules_note": result.rules_note,
        "clock": {"by_workload": result.clocks(), "note": result.clock_note()},
        "contended_runs": result.contended_runs()["run_dir"].astype(str).tolist(),
    }
    if result.score_ci is not None and result.p_rank1 is not None:
        out["score_ci"] = {s: [float(r.score_lo), float(r.score_hi)] for s, r in result.score_ci.iterrows()}
        out["p_rank1"] = {s: float(v) for s, v in result.p_rank1.items()}
    if result.speedup is not None:
        out["speedup"] = {s: _finite(v) for s, v in result.speedup.items()}
        out["speedup_ci"] = {s: [_finite(r.speedup_lo), _finite(r.speedup_hi)] for s, r in result.speedup_ci.iterrows()} if result.speedup_ci is not None else None
    return out


def format_table(result: ScoreResult, compat: str | None) -> str:
    """The terminal leaderboard: the interval and P(rank 1) columns only when there are intervals;
    the speedup over the reference (with its interval when there are intervals) only with one."""
    board = result.leaderboard()
    intervals = "score_lo" in board and "p_rank1" in board
    speedup_title = f"speedup over {result.speedup_reference}" if "speedup" in board else ""
    heading = [f"ruleset: {result.ruleset}" + (f"   (compat: {compat})" if compat else ""), result.clock_note(), result.reference_note()]
    lines = ["; ".join(part for part in heading if part)]
    header = f"{'rank':>4}  {'submission':<24} {'score':>7}  " + (f"{'95% CI':<15} {'P(rank 1)':>9}  " if intervals else "") \
        + (f"{speedup_title:<24}  " if speedup_title else "") + f"{'reached':>7}"
    lines += [header, "-" * len(header)]
    for name, row in board.iterrows():
        ci = f"[{row.score_lo:.3f}, {row.score_hi:.3f}]" if intervals else ""
        p1 = f"{row.p_rank1:.2f}" if intervals else ""
        middle = (f"{ci:<15} {p1:>9}  " if intervals else "") + (f"{speedup_text(row):<24}  " if speedup_title else "")
        lines.append(f"{int(row['rank']):>4}  {name:<24} {row.score:>7.4f}  {middle}{int(row.reached):>3}/{int(row.workloads):<3}")
    if result.intervals_note:
        lines.append(result.intervals_note)
    if result.rules_note:
        lines.append(result.rules_note)
    lines += ["", f"time to target (miss = not reached); {result.clock_note()}:", _times_text(result.times)]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _times_text(times: pd.DataFrame) -> str:
    return times.map(lambda v: "miss" if not math.isfinite(v) else f"{v:.1f}").to_string()
