"""`pacer report`: a self-contained HTML page and a Markdown leaderboard from results trees.

Every plot is a PNG embedded as base64, so the page opens from disk with no other file. Each
submission keeps one colour in every plot.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.core.errors import PacerUserError  # noqa: E402
from harness.scoring.compare import EXACT_LOG2, MISSES_NOTE, NOT_THE_SPEEDUP, Comparison, compare_frame, probability_text  # noqa: E402
from harness.scoring.rules import CONTENDED_MEANING, ScoreResult, ScoringRules, load_roots, one_ruleset, performance_profiles, speedup_text  # noqa: E402
from harness.scoring.scorers import score_results  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.miss{color:#b00}img{max-width:100%}code{font-size:90%}
.contended{color:#b60;font-weight:bold}"""
CONTENDED_MARK = "&#9888;"
"""The mark (a warning sign) beside a time whose runs include one flagged contended."""
Colour = tuple[float, float, float, float]
CLOCK_AXIS = {"wall": "s", "normalized": "reference s"}


def submission_colours(submissions: Sequence[str]) -> dict[str, Colour]:
    """One colour per submission, fixed by the sorted names (the same in every plot)."""
    cmap = plt.get_cmap("tab10" if len(submissions) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(sorted(submissions))}


RULESET_ORDER = ("self", "external")
"""The order of a report's parts when its results hold both rulesets: self-tuning first (every
submission as shipped, at its default point), then external tuning (what a search adds)."""
RULESET_TITLES = {"self": "Self-tuning ruleset", "external": "External tuning ruleset"}


def write_report(roots: Sequence[Path] | Path, out_dir: Path, *, rules: ScoringRules | None = None, compat: str | None = None,
                 allow_mixed: bool = False, log_x: bool = False, cache: bool = True, ruleset: str | None = None) -> Path:
    """Score `roots` (only the runs of `ruleset` when given) and write `out_dir/index.html` and
    `out_dir/leaderboard.md`; return the HTML path.

    Results of both rulesets are scored apart (scoring never mixes them) and reported as two
    parts, each with all of its sections, then a table of how tuning changes the order.

    Raises PacerUserError (one line) when the runs cannot be scored or `out_dir` cannot be made."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    df = load_roots(roots, cache)
    parts = split_by_ruleset(one_ruleset(df, ruleset) if ruleset is not None else df)
    results = {r: score_results(runs, rules, allow_mixed=allow_mixed, compat=compat) for r, runs in parts.items()}
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PacerUserError(f"cannot create the report folder {out_dir}: {e.strerror}") from None
    colours = submission_colours(sorted({s for result in results.values() for s in result.scores.index}))

    def sections(r: str, level: int) -> str:
        return render_sections(report_sections(parts[r], results[r], colours, compat=compat, allow_mixed=allow_mixed, log_x=log_x), level)

    if len(results) == 1:
        body, markdown = sections(next(iter(results)), 2), leaderboard_markdown(next(iter(results.values())))
    else:
        body = "\n".join(f"<h2>{html.escape(RULESET_TITLES[r])}</h2>\n{sections(r, 3)}" for r in results) \
            + f"\n<h2>How tuning changes the order</h2>\n{order_html(results)}"
        markdown = "".join(f"## {RULESET_TITLES[r]}\n\n{leaderboard_markdown(result)}\n" for r, result in results.items()) \
            + f"## How tuning changes the order\n\n{order_markdown(results)}"
    page = f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Pacer leaderboard</title><style>{STYLE}</style></head>\n<body><h1>Pacer leaderboard</h1>\n{body}\n</body></html>\n"
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    (out_dir / "leaderboard.md").write_text(markdown, encoding="utf-8")
    return path


def split_by_ruleset(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of each ruleset, in `RULESET_ORDER`; one part (keyed "all") when the runs hold at
    most one known ruleset, which scoring then checks as it always does."""
    rulesets = set(df["ruleset"].dropna().astype(str)) if "ruleset" in df else set()
    if len(rulesets) < 2 or not rulesets <= set(RULESET_ORDER) or df["ruleset"].isna().any():
        return {"all": df}
    return {r: df[df["ruleset"] == r] for r in RULESET_ORDER if r in rulesets}


def report_sections(df: pd.DataFrame, result: ScoreResult, colours: Mapping[str, Colour], *, compat: str | None,
                    allow_mixed: bool, log_x: bool) -> list[tuple[str, str]]:
    """(title, HTML) of every section of one ruleset's report, in page order."""
    best = best_trials(result)
    sections = [
        ("Leaderboard", leaderboard_html(result)),
        ("Performance profiles", _img(profile_figure(result, colours, log_x))),
        ("Time to target per workload", times_html(result)),
        ("Training curves (best trial of each submission)", _img(curves_figure(df, best, colours))),
        default_points_section(best) if result.ruleset == "self" else ("Best hyperparameters", hyperparameters_html(best, result.clock_note())),
        ("Provenance", provenance_html(df, result, compat)),
    ]
    if not result.contended_runs().empty:
        sections.insert(3, ("Contended runs", contended_html(result)))
    reference = against_reference(result)
    if reference is not None:
        sections.insert(1, (f"Against {reference}", against_html(df, result, reference, allow_mixed)))
    return sections


def render_sections(sections: Sequence[tuple[str, str]], level: int) -> str:
    return "\n".join(f"<h{level}>{html.escape(title)}</h{level}>\n{content}" for title, content in sections)


def order_rows(results: Mapping[str, ScoreResult]) -> tuple[list[str], list[list[str]]]:
    """The submissions that every ruleset's runs hold, best first under the first ruleset: per
    ruleset their rank among themselves, their score (each board's own, relative to its fastest
    submissions, so only the order compares across boards) and the targets they reached.
    Returns (column titles, rows of cells)."""
    boards = {r: result.leaderboard() for r, result in results.items()}
    common = [s for s in next(iter(boards.values())).index if all(s in board.index for board in boards.values())]
    titles = ["submission"] + [f"{RULESET_TITLES[r]}: rank (score; reached)" for r in boards]
    scores = {r: board.loc[common, "score"] for r, board in boards.items()}
    ranks = {r: score.rank(ascending=False, method="min").astype(int) for r, score in scores.items()}

    def cell(r: str, s: str) -> str:
        return f"{ranks[r][s]} ({scores[r][s]:.4f}; {int(boards[r].loc[s, 'reached'])}/{int(boards[r].loc[s, 'workloads'])})"

    return titles, [[s, *(cell(r, s) for r in boards)] for s in common]


def order_note(results: Mapping[str, ScoreResult]) -> str:
    """What the order table compares, and a warning when the boards score different workloads."""
    note = ("Ranks among the submissions that both rulesets ran (equal scores share a rank); each score is its own board's"
            " (relative to that board's fastest), so only the order compares.")
    scored = {r: list(result.scored_times.columns) for r, result in results.items()}
    if len({tuple(sorted(w)) for w in scored.values()}) > 1:
        sets = "; ".join(f"{RULESET_TITLES[r]}: {', '.join(w)}" for r, w in scored.items())
        note += f" The boards score different workloads ({sets}): their orders measure different things."
    return note


def order_html(results: Mapping[str, ScoreResult]) -> str:
    titles, rows = order_rows(results)
    if not rows:
        return "<p>No submission ran under both rulesets.</p>"
    return f"<p>{html.escape(order_note(results))}</p>" + html_table(titles, rows, 0)


def order_markdown(results: Mapping[str, ScoreResult]) -> str:
    titles, rows = order_rows(results)
    if not rows:
        return "No submission ran under both rulesets.\n"
    return "\n".join(markdown_table(titles, rows, 0)) + f"\n\n{markdown_text(order_note(results))}\n"


def _fmt_time(value: float) -> str:
    return "miss" if value is None or not math.isfinite(value) else f"{value:,.1f}"


def _rows(board: pd.DataFrame) -> list[dict[str, str]]:
    """The leaderboard's cells as text, in `_titles`' order; "ci" and "p1" only when the board has
    intervals, "speedup" only when it has a reference."""
    rows = []
    for name, row in board.iterrows():
        cells = {"rank": str(int(row["rank"])), "submission": str(name), "score": f"{row.score:.4f}"}
        if _has_intervals(board):
            cells |= {"ci": f"[{row.score_lo:.3f}, {row.score_hi:.3f}]", "p1": f"{row.p_rank1:.2f}"}
        if "speedup" in board:
            cells["speedup"] = speedup_text(row)
        rows.append(cells | {"reached": f"{int(row.reached)}/{int(row.workloads)}"})
    return rows


def _titles(board: pd.DataFrame, reference: str | None) -> list[str]:
    speedup = [f"speedup over {reference}" + (" (95% CI)" if "speedup_lo" in board else "")] if "speedup" in board else []
    return ["rank", "submission", "score", *(["95% CI", "P(rank 1)"] if _has_intervals(board) else []), *speedup, "workloads reached"]


def _has_intervals(board: pd.DataFrame) -> bool:
    return "score_lo" in board and "p_rank1" in board


def leaderboard_html(result: ScoreResult) -> str:
    """The leaderboard table, with the interval columns only when there are intervals, and the notes above it."""
    board = result.leaderboard()
    titles = _titles(board, result.speedup_reference)
    intervals = " Intervals: bootstrap over studies and trials." if _has_intervals(board) else ""
    meaning = html.escape(result.reference_note() or "1 = fastest on every workload")
    note = f"<p>Ruleset <b>{html.escape(result.ruleset)}</b>; {html.escape(result.clock_note())}; score = normalised area under the performance profile" \
           f" for &tau; in [1, {result.rules.max_ratio:g}] ({meaning}).{intervals}</p>"
    for extra in (result.intervals_note, result.rules_note):
        if extra:
            note += f"<p class='intervals-note'>{html.escape(extra)}</p>"
    return note + html_table(titles, [list(r.values()) for r in _rows(board)], titles.index("submission"))


def leaderboard_markdown(result: ScoreResult) -> str:
    """leaderboard.md: the ruleset and clock, the table, then the intervals note and the contended count."""
    board = result.leaderboard()
    titles = _titles(board, result.speedup_reference)
    lines = markdown_table(titles, [list(r.values()) for r in _rows(board)], titles.index("submission"), centred=("95% CI",))
    notes = [markdown_text(n) for n in (result.intervals_note, result.rules_note) if n]
    flagged = len(result.contended_runs())
    if flagged:
        notes.append(f"Contended runs: {flagged} ({CONTENDED_MEANING}); the report lists them.")
    header = markdown_text("; ".join(n for n in (f"Ruleset: {result.ruleset}", result.clock_note(), result.reference_note()) if n))
    return f"{header}\n\n" + "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in notes)


def html_table(titles: Sequence[str], rows: Sequence[Sequence[str]], name_column: int) -> str:
    """A table whose column `name_column` holds names (left-aligned, escaped) and whose other
    cells are already HTML (formatted numbers)."""
    def row(cells: Sequence[str], tag: str, escape_all: bool) -> str:
        return "<tr>" + "".join(f"<{tag} class='l'>{html.escape(c)}</{tag}>" if i == name_column else f"<{tag}>{html.escape(c) if escape_all else c}</{tag}>"
                                for i, c in enumerate(cells)) + "</tr>"

    return "<table>" + row(titles, "th", True) + "".join(row(r, "td", False) for r in rows) + "</table>"


def markdown_table(titles: Sequence[str], rows: Sequence[Sequence[str]], name_column: int, centred: Sequence[str] = ()) -> list[str]:
    """The lines of a Markdown table: column `name_column` holds names (left-aligned, escaped by
    `markdown_text`), columns titled in `centred` are centred, the others (numbers) right-aligned."""
    align = [":---" if i == name_column else ":---:" if t in centred else "---:" for i, t in enumerate(titles)]
    lines = ["| " + " | ".join(map(markdown_text, titles)) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(markdown_text(c) if i == name_column else c for i, c in enumerate(r)) + " |" for r in rows]


def markdown_text(text: str) -> str:
    """`text` (a name from a run record) as literal text in one Markdown line or table cell:
    no raw HTML (`<script>`, `<img onerror=...>`), no `|` that adds a column, no `[..](..)`
    link or image, no line break that ends the row."""
    escaped = html.escape(" ".join(str(text).splitlines()), quote=False)
    return escaped.translate({ord(c): "\\" + c for c in "\\|[]"})


def against_reference(result: ScoreResult) -> str | None:
    """The submission the "Against" section compares every other one with: the one the
    leaderboard's speedups are over (`--reference`, else adamw when the results hold it); None
    when neither (or nothing else to compare)."""
    return result.speedup_reference


def against_html(df: pd.DataFrame, result: ScoreResult, reference: str, allow_mixed: bool) -> str:
    """`pacer compare S REFERENCE` for every other submission S: per workload and overall, the
    ratio t_reference / t_S, its interval and p; a submission that cannot be compared gets the
    reason, and one whose comparison left something out (studies without a counterpart) the warning."""
    rules = result.rules
    head = "<tr><th class='l'>submission</th><th class='l'>workload</th><th>paired studies</th><th>ratio</th><th>95% CI</th><th>p</th><th>min p</th><th>misses</th></tr>"
    rows, notes = [], []
    for submission in (s for s in result.scores.index if s != reference):
        try:
            comparison = compare_frame(df, submission, reference, ruleset=result.ruleset, seed=rules.seed,
                                       confidence=rules.confidence, allow_mixed=allow_mixed)
        except PacerUserError as e:
            notes.append(f"<p class='refused'>{html.escape(submission)}: not compared: {html.escape(str(e))}</p>")
            continue
        rows += comparison_rows(comparison)
        notes += [f"<p class='refused'>{html.escape(submission)}: {html.escape(w)}</p>" for w in comparison.warnings]
    ref = html.escape(reference)
    intro = (f"<p>ratio = t<sub>{ref}</sub> / t<sub>submission</sub> per paired study (study i with study i), &gt; 1: the submission is faster;"
             f" geometric mean over studies (overall: over workloads). Interval: 95% Student-t over paired studies (overall: Welch-Satterthwaite)."
             f" p: one-sided paired permutation test of 'the submission is faster'; with n studies it cannot go below 1/2<sup>n</sup> (min p);"
             f" ~: from {2**EXACT_LOG2:,} random sign arrangements (more than {EXACT_LOG2} pairs)."
             f" {html.escape(MISSES_NOTE[0].upper() + MISSES_NOTE[1:])}. {html.escape(NOT_THE_SPEEDUP[0].upper() + NOT_THE_SPEEDUP[1:])}."
             f" Same as <code>pacer compare ROOT SUBMISSION {ref}</code>.</p>")
    table = f"<table>{head}{''.join(rows)}</table>" if rows else ""
    return intro + table + "".join(notes)


def comparison_rows(comparison: Comparison) -> list[str]:
    """One table row per workload, then the overall row in bold."""
    rows = []
    for workload, row in [*comparison.workloads.iterrows(), ("overall", comparison.overall)]:
        interval = f"[{row.lo:.3f}, {row.hi:.3f}]"
        cells = [str(int(row.studies)), f"{row.ratio:.3f}", interval, probability_text(row.p) + ("" if row.exact else "~"), probability_text(row.min_p), str(int(row.misses))]
        name = f"<b>{html.escape(str(workload))}</b>" if workload == "overall" else html.escape(str(workload))
        rows.append(f"<tr><td class='l'>{html.escape(comparison.x)}</td><td class='l'>{name}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return rows


def times_html(result: ScoreResult) -> str:
    """Median time per workload with its bootstrap interval (the spread) where there is one,
    misses marked, and a warning sign where a run behind the cell was flagged contended."""
    head = "<tr><th class='l'>submission</th>" + "".join(f"<th>{html.escape(w)}</th>" for w in result.times.columns) + "</tr>"
    flagged = result.contended_runs().groupby(["submission", "workload"]).size()
    rows = []
    for submission, row in result.times.iterrows():
        cells = []
        for workload, value in row.items():
            spread = ""
            if result.time_ci is not None and (submission, workload) in result.time_ci.index:
                lo, hi = result.time_ci.loc[(submission, workload)]
                spread = f"<br><small>[{_fmt_time(lo)}, {_fmt_time(hi)}]</small>"
            count = int(flagged.get((submission, workload), 0))
            mark = f" <span class='contended' title='{count} contended run(s)'>{CONTENDED_MARK}</span>" if count else ""
            cls = " class='miss'" if not math.isfinite(value) else ""
            cells.append(f"<td{cls}>{_fmt_time(value)}{mark}{spread}</td>")
        rows.append(f"<tr><td class='l'>{html.escape(str(submission))}</td>{''.join(cells)}</tr>")
    below = "; below, the 95% bootstrap interval" if result.time_ci is not None and len(result.time_ci) else ""
    marked = f" {CONTENDED_MARK}: a run behind the time was flagged contended (see Contended runs)." if len(flagged) else ""
    return f"<p>Time to the validation target (median over studies); {html.escape(result.clock_note())}{below}.{marked}</p>" \
           f"<table>{head}{''.join(rows)}</table>"


def contended_html(result: ScoreResult) -> str:
    """The scored runs flagged contended, with the reasons their records give."""
    runs = result.contended_runs()
    head = "<tr><th class='l'>run</th><th class='l'>submission</th><th class='l'>workload</th><th class='l'>reasons</th></tr>"
    rows = "".join(f"<tr><td class='l'><code>{html.escape(str(r.run_dir))}</code></td><td class='l'>{html.escape(str(r.submission))}</td>"
                   f"<td class='l'>{html.escape(str(r.workload))}</td><td class='l'>{html.escape(str(r.get('contention_reasons') or 'not recorded'))}</td></tr>"
                   for _, r in runs.iterrows())
    return f"<p class='contended'>{CONTENDED_MARK} {len(runs)} run(s) ran on an oversubscribed machine; their times may be inflated.</p><table>{head}{rows}</table>"


def best_trials(result: ScoreResult) -> pd.DataFrame:
    """Per submission and workload, the run that reached the target fastest (else the one with most evals)."""
    trials = result.trials.sort_values(["time_to_validation", "num_evals"], ascending=[True, False], kind="stable")
    return trials.drop_duplicates(["submission", "workload"]).sort_values(["workload", "submission"])


def profile_figure(result: ScoreResult, colours: Mapping[str, Colour], log_x: bool) -> plt.Figure:
    taus = np.geomspace(1.0, result.rules.max_ratio, 301) if log_x else np.linspace(1.0, result.rules.max_ratio, 301)
    profiles = performance_profiles(result.ratios, taus, result.rules.num_workloads or result.ratios.shape[1])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    lines = [ax.step(taus, rho.to_numpy(), where="post", color=colours[submission], linewidth=2)[0] for submission, rho in profiles.iterrows()]
    labels = [f"{plot_text(submission)} ({result.scores[submission]:.3f})" for submission in profiles.index]
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("τ: time-to-target ratio to the best submission" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("ρ(τ): fraction of workloads within τ")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(lines, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="submission (score)")  # given, so that `_name` is not left out
    fig.tight_layout()
    return fig


def curves_figure(df: pd.DataFrame, best: pd.DataFrame, colours: Mapping[str, Colour]) -> plt.Figure:
    workloads = sorted(best["workload"].unique())
    cols = min(3, len(workloads))
    rows = math.ceil(len(workloads) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 2, 3.3 * rows), squeeze=False)
    chosen = df[df["run_dir"].isin(set(best["run_dir"]))]
    for ax, workload in zip(axes.flat, workloads, strict=False):
        runs = best[best["workload"] == workload]
        metric, target = str(runs["target_metric"].iloc[0]), float(runs["validation_target"].iloc[0])
        for _, run in runs.iterrows():
            evals = chosen[chosen["run_dir"] == run["run_dir"]]
            column = f"validation/{metric}"
            if column in evals and evals[column].notna().any():
                ax.plot(evals["accumulated_submission_time"], evals[column], color=colours[run["submission"]], linewidth=1.6)
        ax.axhline(target, color="black", linestyle="--", linewidth=1)
        ax.set_title(plot_text(workload))
        clock = str(runs["clock"].iloc[0]) if "clock" in runs else "wall"
        ax.set_xlabel(f"submission time ({CLOCK_AXIS.get(clock, 'mixed clocks')})")
        ax.set_ylabel(plot_text(f"validation {metric}"))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(workloads):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, linewidth=2) for c in colours.values()] + [plt.Line2D([], [], color="black", linestyle="--")]
    fig.legend(handles, [*map(plot_text, colours), "target"], loc="upper left", bbox_to_anchor=(1.0, 0.98))
    fig.tight_layout()
    return fig


def plot_text(name: str) -> str:
    """A name from a run record as plain text in a matplotlib label, title or legend: `$`
    escaped, so that `my$\\foo$sub` is not parsed as mathtext (an unknown symbol raises)."""
    return str(name).replace("$", r"\$")


def hyperparameters_html(best: pd.DataFrame, clock_note: str) -> str:
    """Per workload and submission: the hyperparameters of the best trial and its time to target."""
    head = "<tr><th class='l'>workload</th><th class='l'>submission</th><th>time to target</th><th class='l'>hyperparameters</th></tr>"
    rows = []
    for _, run in best.iterrows():
        rows.append(f"<tr><td class='l'>{html.escape(str(run['workload']))}</td><td class='l'>{html.escape(str(run['submission']))}</td>"
                    f"<td>{_fmt_time(run['time_to_validation'])}</td><td class='l'><code>{html.escape(_point_text(run))}</code></td></tr>")
    return f"<p>The fastest trial of each submission on each workload; {html.escape(clock_note)}.</p><table>{head}{''.join(rows)}</table>"


def default_points_section(best: pd.DataFrame) -> tuple[str, str]:
    """Under self-tuning every run of a submission uses its default point: one row per submission
    and point (more than one only when its config changed between runs), with the workloads."""
    head = "<tr><th class='l'>submission</th><th class='l'>default point</th><th class='l'>workloads</th></tr>"
    points = best.assign(point=best.apply(_point_text, axis=1)).groupby(["submission", "point"], sort=True)["workload"].agg(lambda w: ", ".join(sorted(map(str, w))))
    rows = "".join(f"<tr><td class='l'>{html.escape(str(submission))}</td><td class='l'><code>{html.escape(point)}</code></td><td class='l'>{html.escape(workloads)}</td></tr>"
                   for (submission, point), workloads in points.items())
    return "Default points", f"<p>Self-tuning: every run of a submission trains with the default point of its config.</p><table>{head}{rows}</table>"


def _point_text(run: pd.Series) -> str:
    params = json.loads(run["hyperparameters"]) if isinstance(run.get("hyperparameters"), str) else {}
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(params.items())) or "(none)"


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def provenance_html(df: pd.DataFrame, result: ScoreResult, compat: str | None) -> str:
    runs = df.drop_duplicates("run_dir")

    def values(column: str) -> str:
        if column not in runs:
            return "n/a"
        found = sorted({str(v) for v in runs[column].dropna()})
        return ", ".join(found) if found else "n/a"

    studies = result.trials.groupby(["submission", "workload"])["study"].nunique()
    trials = result.trials.groupby(["submission", "workload", "study"])["trial"].nunique()
    dates = pd.to_datetime(runs.get("started_at"), errors="coerce", utc=True).dropna() if "started_at" in runs else pd.Series([], dtype="datetime64[ns, UTC]")
    items = [
        ("ruleset", result.ruleset), ("clock", result.clock_note()), ("scoring", f"AlgoPerf code path ({compat})" if compat else "Pacer (AlgoPerf's written rules, closed form)"),
        ("runs", str(len(runs))), ("studies per workload", f"{studies.min()}–{studies.max()}" if len(studies) else "0"),
        ("trials per study", f"{trials.min()}–{trials.max()}" if len(trials) else "0"),
        ("hardware fingerprint", values("fingerprint_id")), ("CPU", values("cpu")), ("GPU", values("hardware")),
        ("torch", values("torch_version")), ("pacer", values("pacer_version")), ("git commit", values("git_commit")),
        ("run dates", f"{dates.min():%Y-%m-%d %H:%M} – {dates.max():%Y-%m-%d %H:%M} UTC" if len(dates) else "n/a"),
    ]
    items += [("warning", w) for w in result.warnings]
    return "<table>" + "".join(f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{html.escape(v)}</td></tr>" for k, v in items) + "</table>"


def _img(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"
