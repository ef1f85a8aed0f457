"""`pacer score` and `pacer report`: thin argument parsing over harness.scoring.rules / harness.scoring.report."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.core.checks import parse_options
from harness.core.errors import PacerUserError
from harness.core.store import check_output_folder
from harness.scoring.algoperf_import import algoperf_targets, folder_argument
from harness.scoring.rules import ScoreResult, ScoringRules, speedup_text
from harness.scoring.scorers import score_roots


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compat", choices=["algoperf"], default=None, help="reproduce AlgoPerf's own scoring code")
    parser.add_argument("--reference", default=None, help="submission whose times are the ratio denominators (and the speedup baseline)")
    parser.add_argument("--allow-mixed", action="store_true", help="score runs from different hardware fingerprints or targets together")
    parser.add_argument("--held-out", default=None, help="comma-separated held-out variant workloads, or 'v0.5' for AlgoPerf's draw; turns the held-out rule on")
    parser.add_argument("--no-cutoff", action="store_true", help="do not turn times above 4x the fastest into misses")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the Parquet cache beside the results")


def rules_from(opts: argparse.Namespace) -> ScoringRules:
    held_out: tuple[str, ...] = ()
    if opts.held_out:
        held_out = tuple(algoperf_targets(opts.held_out)["held_out"]) if opts.held_out.startswith("v") and opts.held_out[1:2].isdigit() else tuple(w for w in opts.held_out.split(",") if w)
    return ScoringRules(cutoff=None if opts.no_cutoff else 4.0, held_out=held_out, held_out_rule=bool(held_out), reference=opts.reference,
                        bootstrap=opts.bootstrap, seed=opts.seed)


def _score(opts: argparse.Namespace) -> ScoreResult:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_roots(opts.roots, rules_from(opts), allow_mixed=opts.allow_mixed, compat=opts.compat, cache=not opts.no_cache)
    result.warnings.extend(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    return result


def score_command(args: Sequence[str]) -> int:
    """`pacer score ROOT [ROOT...] [--format table|json] [--out DIR] ...`"""
    parser = argparse.ArgumentParser(prog="pacer score", description="Score results trees (performance profiles, benchmark scores).")
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--out", type=folder_argument, default=None, help="folder for times/scores CSV and Parquet (default: ROOT/scores)")
    add_scoring_arguments(parser)
    opts = parse_options(parser, args)
    check_output_folder(opts.out or opts.roots[0] / "scores", "score tables")
    result = _score(opts)
    write_tables(result, opts.out or opts.roots[0] / "scores")
    if opts.format == "json":
        print(json.dumps(as_json(result, opts.compat), indent=2, sort_keys=True))
    else:
        print(format_table(result, opts.compat))
    return 0


def report_command(args: Sequence[str]) -> int:
    """`pacer report ROOT [ROOT...] --out DIR [--log-x] ...`"""
    parser = argparse.ArgumentParser(prog="pacer report", description="Write the HTML report and Markdown leaderboard.")
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--out", type=folder_argument, required=True)
    parser.add_argument("--log-x", action="store_true", help="log-scaled tau axis in the performance profile")
    add_scoring_arguments(parser)
    opts = parse_options(parser, args)
    check_output_folder(opts.out, "the report")
    from harness.scoring.report import write_report

    path = write_report(opts.roots, opts.out, rules=rules_from(opts), compat=opts.compat, allow_mixed=opts.allow_mixed, log_x=opts.log_x, cache=not opts.no_cache)
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
    speedup_title = f"speedup over {result.rules.reference}" if "speedup" in board else ""
    lines = [f"ruleset: {result.ruleset}" + (f"   (compat: {compat})" if compat else "") + f"; {result.clock_note()}"]
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
