"""The HTML report and Markdown leaderboard, rendered for real in headless Chromium."""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from scoring_fixtures import write_run, write_table

from harness.scoring.report import best_trials, curves_figure, profile_figure, submission_colours, write_report
from harness.scoring.rules import ScoringRules, load_roots
from harness.scoring.scorers import score_results

LEADERBOARD = Path(__file__).resolve().parents[1] / "docs" / "leaderboard"
"""The published CPU-tier leaderboard: its records (records.tar.xz), leaderboard.md and index.html."""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_table(root, {"adamw": {"mlp": [[10, 14], [11, None]], "cnn": [[30, 40], [35, 33]]},
                       "nadamw": {"mlp": [[8, 9], [12, 10]], "cnn": [[None, None], [None, None]]},
                       "sgd": {"mlp": [[25, 30], [None, 28]], "cnn": [[60, 70], [65, 90]]}})
    write_run(root, "adamw", "mlp", 0, 0, 10, hyperparameters={"learning_rate": 0.00123, "warmup": 0.05})
    return write_report(root, root / "report", rules=ScoringRules(bootstrap=200))


def embedded_images(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r"src='data:image/png;base64,([^']+)'", page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()  # raises if the PNG does not decode
        images.append(image)
    return images


def test_report_is_self_contained_and_has_every_section(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    for heading in ("Leaderboard", "Performance profiles", "Time to target per workload", "Training curves", "Best hyperparameters", "Provenance"):
        assert f"<h2>{heading}" in page
    assert not re.search(r"(src|href)=['\"](?!data:)", page) and "http" not in page  # no external assets
    images = embedded_images(page)
    assert len(images) == 2 and all(min(i.size) > 100 for i in images)
    assert "learning_rate=0.00123" in page and "fp-test" in page and "abc123" in page and "class='miss'" in page
    markdown = (report.parent / "leaderboard.md").read_text(encoding="utf-8")
    assert markdown.splitlines()[2].startswith("| rank | submission | score | 95% CI") and "| 1 | adamw |" in markdown


def _name_submissions(root: Path, names: list[str]) -> None:
    """Give the runs of submission s<i> the name names[i] in their records: a record's field can
    say anything, while its folder must be one safe name."""
    for i, name in enumerate(names):
        for record in root.glob(f"*/*/s{i}/*/study_*/trial_*/run.json"):
            record.write_text(json.dumps(json.loads(record.read_text()) | {"submission": name}))


def test_markdown_leaderboard_writes_names_as_text(tmp_path: Path) -> None:
    """Names come from run records anyone can write: no raw HTML, no `|` that adds a column, no
    link, no line break that ends a row (the HTML page escapes them too)."""
    names = ["<script>alert(1)</script>", "a|b", "<img src=x onerror=alert(1)>", "[x](https://example.com)", "two\nlines"]
    write_table(tmp_path, {f"s{i}": {"w": [[10 + i]]} for i in range(len(names))})
    _name_submissions(tmp_path, names)
    write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=0))
    markdown = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8")
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    columns = [len(re.split(r"(?<!\\)\|", line)) for line in table]
    assert len(table) == 2 + len(names) and set(columns) == {columns[0]}, table
    assert "<" not in markdown and "| &lt;script&gt;alert(1)&lt;/script&gt; |" in markdown and "| a\\|b |" in markdown
    assert "| \\[x\\](https://example.com) |" in markdown and "| two lines |" in markdown


def test_names_with_dollars_or_a_leading_underscore_are_plain_text_in_the_plots(tmp_path: Path) -> None:
    """`my$\\foo$sub` is not parsed as mathtext (its unknown symbol used to stop the report) and
    `_underscore` is not left out of a legend, as matplotlib does with labels starting with `_`."""
    names = ["my$\\foo$sub", "_underscore", "plain"]
    write_table(tmp_path, {f"s{i}": {"w$x$": [[10 + i]]} for i in range(len(names))})
    _name_submissions(tmp_path, names)
    report = write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=0))
    assert len(embedded_images(report.read_text(encoding="utf-8"))) == 2

    df = load_roots([tmp_path], False)
    result = score_results(df, ScoringRules(bootstrap=0))
    colours = submission_colours(names)
    profile, curves = profile_figure(result, colours, False), curves_figure(df, best_trials(result), colours)
    for fig, legend in ((profile, profile.axes[0].get_legend()), (curves, curves.legends[0])):
        fig.canvas.draw()  # where mathtext would raise
        assert {t.get_text().split(" (")[0] for t in legend.get_texts()} >= {"my\\$\\foo\\$sub", "_underscore", "plain"}
    assert curves.axes[0].get_title() == "w\\$x\\$"
    plt.close(profile)
    plt.close(curves)


def test_colours_are_fixed_per_submission() -> None:
    assert submission_colours(["b", "a", "c"]) == submission_colours(["c", "b", "a"])
    assert len(set(submission_colours([f"s{i}" for i in range(12)]).values())) == 12


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (tests/system/setup.d/20-chromium.sh installs it as root)")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    cmd = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    assert (pixels < 250).mean() > 0.02 and pixels.std() > 10  # text, tables and plots, not a blank page
    # the plots were decoded by the browser: coloured pixels (lines) appear, not only grey text
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert (np.ptp(rgb, axis=2) > 60).mean() > 0.001


def test_report_verb_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path / "r", {"a": {"w": [[10]]}, "b": {"w": [[None]]}})
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--bootstrap", "20", "--log-x"]) == 0
    assert "report:" in capsys.readouterr().out
    assert (tmp_path / "out" / "index.html").exists() and (tmp_path / "out" / "leaderboard.md").exists()
    assert main(["report", str(tmp_path / "r")]) == 2  # --out is required


def test_report_with_intervals_says_so_and_names_the_wall_clock(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    markdown = (report.parent / "leaderboard.md").read_text(encoding="utf-8")
    assert "<th>95% CI</th><th>P(rank 1)</th>" in page and "Intervals: bootstrap over studies and trials." in page
    assert "no intervals" not in page and "no intervals" not in markdown
    assert "times in wall-clock seconds" in page and markdown.startswith("Ruleset: external; times in wall-clock seconds\n")
    assert "Contended runs" not in page and "Contended" not in markdown


def test_one_study_report_shows_no_interval_and_marks_contended_runs(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10, 11]]}, "c": {"w": [[14]]}}, clock="normalized")
    flagged = write_run(tmp_path, "b", "w", 0, 0, 12, clock="normalized", contended=True)
    page = write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=100)).read_text(encoding="utf-8")
    markdown = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8")
    note = "no intervals: one study per submission and workload; a bootstrap needs at least 2"
    assert note in page and note in markdown.splitlines()
    assert "95% CI" not in page and "P(rank 1)" not in page and "bootstrap interval" not in page
    assert "95% CI" not in markdown and markdown.splitlines()[2] == "| rank | submission | score | workloads reached |"
    assert "times in reference seconds (normalized clock)" in page and "times in reference seconds (normalized clock)" in markdown.splitlines()[0]
    assert "<h2>Contended runs</h2>" in page and str(flagged.path) in page and "load average 7.9 on 2 cores; run-queue wait 35% of CPU time" in page
    assert page.count("<span class='contended'") == 1  # b's cell only
    assert "Contended runs: 1 (their machine was oversubscribed; their times may be inflated); the report lists them." in markdown.splitlines()


def test_against_adamw_compares_every_other_submission_or_says_why_not(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert page.index("<h2>Leaderboard</h2>") < page.index("<h2>Against adamw</h2>") < page.index("<h2>Performance profiles</h2>")
    for name in ("nadamw", "sgd"):  # two studies each: refused, with compare's reason
        assert f"<p class='refused'>{name}: not compared: workload cnn has 2 paired studies of {name} and adamw; a comparison needs at least 3" in page


def test_against_the_reference_shows_ratios_intervals_and_p_and_the_leaderboard_its_speedup_interval(tmp_path: Path) -> None:
    # fast is 2x faster than base in every study of both workloads: ratio 2, p = 1/8 per workload, 1/64 overall
    write_table(tmp_path, {"base": {"w1": [[20], [22], [24]], "w2": [[8], [6], [4]]}, "fast": {"w1": [[10], [11], [12]], "w2": [[4], [3], [2]]}})
    page = write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=200, reference="base")).read_text(encoding="utf-8")
    assert "<h2>Against base</h2>" in page and "Same as <code>pacer compare ROOT SUBMISSION base</code>" in page
    for workload in ("w1", "w2"):
        assert f"<tr><td class='l'>fast</td><td class='l'>{workload}</td><td>3</td><td>2.000</td><td>[2.000, 2.000]</td><td>0.1250</td><td>0.1250</td><td>0</td></tr>" in page
    assert "<td class='l'><b>overall</b></td><td>6</td><td>2.000</td><td>[2.000, 2.000]</td><td>0.0156</td>" in page
    # the leaderboard resamples each submission's studies on their own (unpaired): wider than compare's paired [2, 2]
    lo, hi = map(float, re.search(r"<td class='l'>fast</td><td>1.0000</td><td>\[1.000, 1.000\]</td><td>0.50</td><td>2.000 \[([\d.]+), ([\d.]+)\]</td>", page).groups())
    assert "<th>speedup over base (95% CI)</th>" in page and lo < 2.0 < hi
    markdown = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8")
    assert markdown.splitlines()[2] == "| rank | submission | score | 95% CI | P(rank 1) | speedup over base (95% CI) | workloads reached |"
    assert f"| 1 | fast | 1.0000 | [1.000, 1.000] | 0.50 | 2.000 [{lo:.3f}, {hi:.3f}] | 2/2 |" in markdown
    plain = write_report(tmp_path, tmp_path / "plain", rules=ScoringRules(bootstrap=0)).read_text(encoding="utf-8")
    assert "Against" not in plain and "speedup" not in plain  # no adamw and no --reference


def test_results_of_both_rulesets_get_a_part_each_and_a_table_of_how_tuning_changes_the_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # self-tuning: a before c; external tuning: c before a. b ran only self-tuning, d only external tuning.
    write_table(tmp_path, {"a": {"w": [[10], [11], [12]]}, "b": {"w": [[40], [41], [42]]}, "c": {"w": [[20], [21], [22]]}}, ruleset="self")
    write_table(tmp_path, {"a": {"w": [[30, 32]] * 3}, "c": {"w": [[15, 18]] * 3}, "d": {"w": [[None, 50]] * 3}}, ruleset="external")
    page = write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=50)).read_text(encoding="utf-8")
    assert page.index("<h2>Self-tuning ruleset</h2>") < page.index("<h2>External tuning ruleset</h2>") < page.index("<h2>How tuning changes the order</h2>")
    assert page.count("<h3>Leaderboard</h3>") == 2 and page.count("<h3>Provenance</h3>") == 2 and "<h2>Leaderboard</h2>" not in page
    assert "Ruleset <b>self</b>" in page and "Ruleset <b>external</b>" in page and len(embedded_images(page)) == 4
    # self-tuning: one row per submission and default point; external tuning: the best trial per workload
    assert page.count("<h3>Default points</h3>") == 1 and page.count("<h3>Best hyperparameters</h3>") == 1
    assert "<tr><td class='l'>a</td><td class='l'><code>learning_rate=0.001</code></td><td class='l'>w</td></tr>" in page
    markdown = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0] == "## Self-tuning ruleset" and markdown[2].startswith("Ruleset: self;") and "## External tuning ruleset" in markdown
    order = markdown[markdown.index("## How tuning changes the order") + 2:]
    assert order[0] == "| submission | Self-tuning ruleset: rank (score; reached) | External tuning ruleset: rank (score; reached) |"
    assert re.fullmatch(r"\| a \| 1 \(1\.0000; 1/1\) \| 2 \(0\.\d{4}; 1/1\) \|", order[2])
    assert re.fullmatch(r"\| c \| 2 \(0\.\d{4}; 1/1\) \| 1 \(1\.0000; 1/1\) \|", order[3])
    assert len(order) == 6 and order[5].startswith("Ranks among the submissions that both rulesets ran")  # b and d: one board each
    assert "different workloads" not in order[5]
    from harness.cli import main

    assert main(["score", str(tmp_path), "--out", str(tmp_path / "s1")]) == 2  # score: one ruleset at a time ...
    assert capsys.readouterr().err.strip() == "pacer: error: runs from 2 rulesets (external, self); pick one with --ruleset"
    assert main(["score", str(tmp_path), "--ruleset", "external", "--out", str(tmp_path / "s2")]) == 0  # ... picked by --ruleset
    assert "| c " not in capsys.readouterr().out and (tmp_path / "s2" / "scores.csv").read_text().count("\n") == 4  # a, c, d and the header
    assert main(["report", str(tmp_path), "--ruleset", "self", "--out", str(tmp_path / "self_only")]) == 0
    assert "External" not in (tmp_path / "self_only" / "index.html").read_text(encoding="utf-8")
    assert main(["report", str(tmp_path), "--reference", "b", "--out", str(tmp_path / "r")]) == 2  # b has no external runs
    assert capsys.readouterr().err.strip() == "pacer: error: reference submission 'b' has no external runs here (submissions with external runs: a, c, d)"


def test_the_speedup_is_over_adamw_by_default_and_only_reference_changes_the_scores(tmp_path: Path) -> None:
    write_table(tmp_path, {"adamw": {"w1": [[20], [22], [24]], "w2": [[8], [6], [4]]}, "fast": {"w1": [[10], [11], [12]], "w2": [[4], [3], [2]]}})
    plain = score_results(load_roots([tmp_path]), ScoringRules(bootstrap=100))
    assert plain.speedup_reference == "adamw" and plain.speedup["fast"] == pytest.approx(2.0) and plain.reference_note() is None
    assert plain.scores["fast"] == 1.0 and plain.scores["adamw"] < 1.0  # ratios to the fastest, as AlgoPerf scores
    write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=100))
    markdown = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0] == "Ruleset: external; times in wall-clock seconds" and "speedup over adamw (95% CI)" in markdown[2]
    against = score_results(load_roots([tmp_path]), ScoringRules(bootstrap=100, reference="adamw"))
    assert against.scores["adamw"] == 1.0 and against.speedup["fast"] == pytest.approx(2.0)  # ratios to adamw: both within 1x of it
    write_report(tmp_path, tmp_path / "against", rules=ScoringRules(bootstrap=100, reference="adamw"))
    first = (tmp_path / "against" / "leaderboard.md").read_text(encoding="utf-8").splitlines()[0]
    assert first == "Ruleset: external; times in wall-clock seconds; scores from ratios to adamw's time per workload (--reference), not to the fastest's"


def test_the_order_table_warns_when_the_rulesets_score_different_workloads(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10], [11], [12]]}, "c": {"w": [[20], [21], [22]]}}, ruleset="self")
    write_table(tmp_path, {"a": {"w": [[30]] * 3, "v": [[None]] * 3}, "c": {"w": [[15]] * 3, "v": [[None]] * 3}}, ruleset="external")
    write_report(tmp_path, tmp_path / "report", rules=ScoringRules(bootstrap=0))
    note = (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8").splitlines()[-1]
    assert note.endswith("The boards score different workloads (Self-tuning ruleset: w; External tuning ruleset: v, w): their orders measure different things.")


def test_the_published_leaderboard_is_what_pacer_report_renders_from_its_published_records(tmp_path: Path) -> None:
    with tarfile.open(LEADERBOARD / "records.tar.xz") as archive:
        archive.extractall(tmp_path, filter="data")
    write_report(sorted(tmp_path.iterdir()), tmp_path / "report", cache=False)
    assert (tmp_path / "report" / "leaderboard.md").read_text(encoding="utf-8") == (LEADERBOARD / "leaderboard.md").read_text(encoding="utf-8")


def test_the_readme_results_open_with_the_published_self_tuning_table() -> None:
    def first_table(text: str) -> list[str]:
        def is_row(line: str) -> bool:
            return line.startswith("|")

        return list(itertools.takewhile(is_row, itertools.dropwhile(lambda line: not is_row(line), text.splitlines())))

    readme = (LEADERBOARD.parents[1] / "README.md").read_text(encoding="utf-8")
    results = readme.split("## Results", 1)[1]
    published = (LEADERBOARD / "leaderboard.md").read_text(encoding="utf-8")
    assert first_table(results) == first_table(published)
