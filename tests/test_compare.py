"""`pacer compare`: hand-checkable ratios and permutation p-values on real run records, the
refusals, and the coverage of its interval."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scoring_fixtures import write_table

from harness.cli import main
from harness.core.store import load_results
from harness.scoring.compare import compare_frame, mean_log_interval

T_975_2_DOF = 4.302652729911275
"""Student's t 97.5% quantile with 2 degrees of freedom (3 paired studies), from a t table."""


def compare_json(root: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["compare", str(root), *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    return lines[0]


def exact_p(log_ratios: list[float], weights: list[float]) -> float:
    """The permutation p by its definition, over itertools' 2^n sign arrangements."""
    observed = sum(w * v for w, v in zip(weights, log_ratios, strict=True))
    arrangements = list(itertools.product([1, -1], repeat=len(log_ratios)))
    return sum(sum(s * w * v for s, w, v in zip(signs, weights, log_ratios, strict=True)) >= observed - 1e-12 for signs in arrangements) / len(arrangements)


def test_three_studies_with_known_ratios_give_the_geometric_mean_and_the_exact_p(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # ratio = t_y / t_x: w1 2, 4, 1.5 (all favour x); w2 2, 0.5 and 1 (both missed: budget + 1 s on each side)
    logs = [math.log(2), math.log(4), math.log(1.5), math.log(2), math.log(0.5), 0.0]
    write_table(tmp_path, {"x": {"w1": [[10], [10], [10]], "w2": [[10], [20], [None]]},
                           "y": {"w1": [[20], [40], [15]], "w2": [[20], [10], [None]]}}, budget=100.0)
    data = compare_json(tmp_path, "x", "y", capsys=capsys)
    w1, w2, overall = data["workloads"]["w1"], data["workloads"]["w2"], data["overall"]
    assert w1["ratio"] == pytest.approx(12 ** (1 / 3)) and w1["p"] == 1 / 8 and w1["min_p"] == 0.125 and w1["p_exact"]
    assert w2["ratio"] == pytest.approx(1.0) and w2["p"] == 6 / 8  # the both-missed study is a tie under every flip
    assert w2["misses"] == 2 and w1["misses"] == 0 and overall["misses"] == 2
    assert overall["ratio"] == pytest.approx(12 ** (1 / 6)) and overall["studies"] == 6
    assert overall["p"] == pytest.approx(exact_p(logs, [1 / 6] * 6)) and overall["min_p"] == 1 / 32  # the both-missed pair flips to itself
    assert w2["min_p"] == 1 / 4
    # Student's t on the three log ratios: mean log 12 / 3, standard error s / sqrt(3), 2 degrees of freedom
    mean = math.log(12) / 3
    half = T_975_2_DOF * math.sqrt(sum((v - mean) ** 2 for v in logs[:3]) / 2 / 3)
    assert w1["interval"] == pytest.approx([math.exp(mean - half), math.exp(mean + half)])
    assert data["ratio"] == "t_y / t_x (> 1: x is faster)" and "budget + 1 s" in data["misses"]
    reverse = compare_json(tmp_path, "y", "x", capsys=capsys)["workloads"]["w1"]
    assert reverse["ratio"] == pytest.approx(12 ** (-1 / 3)) and reverse["p"] == 1.0


def test_a_miss_on_one_side_counts_as_the_budget_plus_one_second(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[50], [50], [50]]}, "y": {"w": [[None], [50], [50]]}}, budget=100.0)
    w = compare_json(tmp_path, "x", "y", capsys=capsys)["workloads"]["w"]
    assert w["ratio"] == pytest.approx((101 / 50) ** (1 / 3)) and w["misses"] == 1
    assert w["p"] == 0.5  # log ratios (l, 0, 0): the 4 arrangements that keep l positive reach the observed sum


def test_the_table_says_what_the_numbers_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w1": [[10], [10], [10]]}, "y": {"w1": [[20], [40], [15]]}})
    assert main(["compare", str(tmp_path), "x", "y"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("x against y (external ruleset): ratio = t_y / t_x per paired study, > 1: x is faster")
    assert lines[1].startswith("95% Student-t interval over paired studies (overall: Welch-Satterthwaite)") and "(min p = 1/2^n, n: the pairs whose times differ)" in lines[1]
    assert lines[2] == ("a miss counts as the workload's budget + 1 s (as the geometric-mean speedup), so a ratio with misses is a bound, "
                        "not a measurement; both missing is ratio 1: not measured, not equal")
    assert lines[3].startswith("not the leaderboard's speedup (a ratio of median times per workload, unpaired)")
    w1 = next(line for line in lines if line.startswith("w1 "))
    assert w1.split()[:3] == ["w1", "3", f"{12 ** (1 / 3):.3f}"] and w1.split()[-3:] == ["0.1250", "0.1250", "0"]
    assert any(line.startswith("overall ") for line in lines)


REFUSALS = [
    (["x", "x"], "pacer: error: compare x with another submission, not with itself"),
    (["x", "nope"], "pacer: error: no runs of submission 'nope' in these results (submissions with runs: x, y)"),
    (["x", "y"], "pacer: error: workload w2 has 2 paired studies of x and y; a comparison needs at least 3 (the smallest p-value n studies can give is 1/2^n)"),
    (["x", "y", "--bootstrap", "100"], "pacer: error: pacer compare: unknown option --bootstrap (see pacer compare --help)"),
    (["x"], "pacer: error: pacer compare: the following arguments are required: Y"),
]


@pytest.mark.parametrize(("args", "expected"), REFUSALS)
def test_refusals_are_one_line_and_exit_2(args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w1": [[10], [10], [10]], "w2": [[5], [5]]}, "y": {"w1": [[20], [40], [15]], "w2": [[7], [7], [7]]}})
    assert main(["compare", str(tmp_path), *args]) == 2
    assert one_error_line(capsys).startswith(expected)


def test_a_workload_only_one_side_ran_has_no_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w1": [[10], [10], [10]], "w2": [[5], [5], [5]]}, "y": {"w1": [[20], [40], [15]]}})
    assert main(["compare", str(tmp_path), "x", "y"]) == 2
    assert one_error_line(capsys) == "pacer: error: workload w2 has 0 paired studies of x and y; a comparison needs at least 3 (the smallest p-value n studies can give is 1/2^n)"


def test_mixed_rulesets_are_refused_without_ruleset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[10], [10], [10]]}, "y": {"w": [[20], [40], [15]]}})
    write_table(tmp_path, {"x": {"w": [[30], [30], [30]]}, "y": {"w": [[10], [10], [10]]}}, ruleset="self")
    assert main(["compare", str(tmp_path), "x", "y"]) == 2
    assert one_error_line(capsys) == "pacer: error: runs from 2 rulesets (external, self); pick one with --ruleset"
    external = compare_json(tmp_path, "x", "y", "--ruleset", "external", capsys=capsys)
    self_tuning = compare_json(tmp_path, "x", "y", "--ruleset", "self", capsys=capsys)
    assert external["ruleset"] == "external" and external["overall"]["ratio"] == pytest.approx(12 ** (1 / 3))
    assert self_tuning["ruleset"] == "self" and self_tuning["overall"]["ratio"] == pytest.approx(1 / 3)


def test_studies_without_a_counterpart_are_left_out_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[10], [10], [10], [1]]}, "y": {"w": [[20], [40], [15]]}})
    data = compare_json(tmp_path, "x", "y", capsys=capsys)
    assert data["workloads"]["w"]["studies"] == 3 and data["workloads"]["w"]["ratio"] == pytest.approx(12 ** (1 / 3))
    assert data["warnings"] == ["w: studies without a counterpart are left out (only x has 3)"]


def test_the_best_trial_of_each_study_is_paired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[10, 30], [None, 10], [10, 12], [9, 11]]}, "y": {"w": [[20], [40], [15], [12]]}})
    w = compare_json(tmp_path, "x", "y", capsys=capsys)["workloads"]["w"]
    assert w["ratio"] == pytest.approx((2 * 4 * 1.5 * 12 / 9) ** (1 / 4)) and w["studies"] == 4


def test_more_than_16_pairs_draw_65536_sign_arrangements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 6 workloads x 3 studies = 18 pairs, every log ratio log 2 > 0: only the observed arrangement reaches it
    write_table(tmp_path, {"x": {f"w{i}": [[10], [10], [10]] for i in range(6)}, "y": {f"w{i}": [[20], [20], [20]] for i in range(6)}})
    overall = compare_json(tmp_path, "x", "y", capsys=capsys)["overall"]
    overall_p = overall["p"]
    assert not overall["p_exact"] and overall["min_p"] == 2.0**-18
    assert 1 / 65537 <= overall["p"] <= 5 / 65537  # E[hits] = 65536 / 2^18 = 0.25 besides the observed one
    assert overall["interval"] == pytest.approx([2.0, 2.0])  # no spread: the interval is the point
    assert main(["compare", str(tmp_path), "x", "y"]) == 0
    table = capsys.readouterr().out
    assert "~: p from 65,536 random sign arrangements (more than 16 pairs: too many of the 2^n to enumerate)" in table
    overall = next(line for line in table.splitlines() if line.startswith("overall")).split()
    assert overall[3:7] == ["[2.000,", "2.000]", f"{overall_p:.1e}~", "3.8e-06"]  # p and 1/2^18 below 0.001


# ---------------------------------------------------------------- coverage


def lognormal_experiments(rng: np.random.Generator, experiments: int, studies: int, sigma: float = 0.3) -> tuple[np.ndarray, float]:
    """Per experiment, submission (0: the reference, 1: the other), workload and study, a time
    exp(mu + sigma z); the other is exp(delta_w) faster on workload w, so the true geometric-mean
    speedup (of the medians, and of the per-study ratios) is exp(mean delta)."""
    delta = np.array([0.1, -0.05, 0.2, 0.0, 0.15])
    mu_reference = np.log(20.0) + 0.3 * np.arange(len(delta))
    mu = np.stack([mu_reference, mu_reference - delta])
    return np.exp(mu[None, :, :, None] + sigma * rng.standard_normal((experiments, 2, len(delta), studies))), float(np.exp(delta.mean()))


@pytest.fixture(scope="module")
def compare_coverage(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The share of 200 experiments (5 workloads x 3 lognormal studies, the true ratio known)
    whose 95% overall interval from `pacer compare` covers the true ratio. Experiment 0 goes
    through records on disk and `compare_frame`; the others through the same interval function."""
    root = tmp_path_factory.mktemp("coverage")
    times, true = lognormal_experiments(np.random.default_rng(0), 200, 3)
    write_table(root, {name: {f"w{w}": [[float(t)] for t in times[0, s, w]] for w in range(5)} for s, name in enumerate(["ref", "new"])},
                ruleset="self", budget=1e6)
    on_disk = compare_frame(load_results(root), "new", "ref", seed=0).overall
    log_ratios = np.log(times[:, 0]) - np.log(times[:, 1])  # (experiment, workload, study)
    assert on_disk.ratio == pytest.approx(float(np.exp(log_ratios[0].mean())))
    assert [on_disk.lo, on_disk.hi] == pytest.approx([math.exp(v) for v in mean_log_interval(list(log_ratios[0]), 0.95)[1:]])
    intervals = np.exp([mean_log_interval(list(experiment), 0.95)[1:] for experiment in log_ratios])
    return float(((intervals[:, 0] <= true) & (true <= intervals[:, 1])).mean())


def test_compare_interval_covers_the_true_ratio_in_90_to_99_percent_of_200_experiments(compare_coverage: float) -> None:
    assert 0.90 <= compare_coverage <= 0.99


def test_a_workload_both_sides_missed_every_time_has_no_floor_below_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[None], [None], [None]]}, "y": {"w": [[None], [None], [None]]}}, budget=100.0)
    w = compare_json(tmp_path, "x", "y", capsys=capsys)["workloads"]["w"]
    assert w["ratio"] == 1.0 and w["interval"] == [1.0, 1.0] and w["p"] == 1.0 and w["min_p"] == 1.0 and w["misses"] == 6


def test_contended_runs_are_named_in_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_table(tmp_path, {"x": {"w": [[10], [10], [10]]}}, contended=True)
    write_table(tmp_path, {"y": {"w": [[20], [40], [15]]}}, contended=False)
    warnings = compare_json(tmp_path, "x", "y", capsys=capsys)["warnings"]
    assert warnings == ["3 of x's 3 runs were flagged contended (their machine was oversubscribed; their times may be inflated)"]
