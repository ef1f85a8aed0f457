"""Scoring rules on hand-computed examples, written as real run records."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scoring_fixtures import write_run, write_table

from harness.core.errors import PacerUserError
from harness.core.store import RunDir, load_results
from harness.scoring.rules import (
    ScoringRules,
    apply_held_out,
    bootstrap_times,
    closed_form_scores,
    percentile_interval,
    score_frame,
    speedup_array,
    speedup_text,
    trapezoid_scores,
)

REPO = Path(__file__).resolve().parents[1]
NO_BOOT = ScoringRules(bootstrap=0)


def score(root: Path, rules: ScoringRules = NO_BOOT, **kwargs):
    return score_frame(load_results(root), rules, **kwargs)


def test_trial_times_first_eval_meeting_the_target(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 7.0, evals=4)
    write_run(tmp_path, "a", "w", 0, 1, None)
    trials = score(tmp_path).trials.set_index("trial")
    assert trials.loc[0, "time_to_validation"] == 7.0
    assert trials.loc[0, "steps_to_validation"] == 700
    assert trials.loc[0, "time_to_test"] == 7.0 and trials.loc[1, "time_to_test"] == math.inf
    assert trials.loc[1, "time_to_validation"] == math.inf


def test_external_rule_median_over_studies_of_min_over_trials_with_inf(tmp_path: Path) -> None:
    # studies: min(10, 20) = 10, min(12, miss) = 12, all miss = inf -> median(10, 12, inf) = 12
    write_table(tmp_path, {"a": {"w": [[10, 20], [12, None], [None, None]]}})
    assert score(tmp_path).times.loc["a", "w"] == 12.0


def test_even_number_of_studies_with_a_miss_has_infinite_median(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[5], [None]]}, "b": {"w": [[9], [9]]}})
    result = score(tmp_path)
    assert result.times.loc["a", "w"] == math.inf  # median(5, inf) = (5 + inf) / 2
    assert result.scores["b"] == 1.0 and result.scores["a"] == 0.0


def test_self_tuning_rule_median_over_studies(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[3], [None], [7]]}}, ruleset="self")
    result = score(tmp_path)
    assert result.ruleset == "self" and result.times.loc["a", "w"] == 7.0


def test_ties_share_rank_one(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10], [10]]}, "b": {"w": [[10], [10]]}, "c": {"w": [[25], [25]]}})  # 2 studies: intervals
    result = score(tmp_path, ScoringRules(bootstrap=50))
    board = result.leaderboard()
    assert board.loc["a", "rank"] == board.loc["b", "rank"] == 1 and board.loc["c", "rank"] == 3
    assert result.scores["a"] == result.scores["b"] == 1.0
    assert result.scores["c"] == pytest.approx((4 - 2.5) / 3)
    assert result.p_rank1["a"] == pytest.approx(0.5) and result.p_rank1["c"] == 0.0


def test_all_miss_workload_counts_in_n_and_scores_zero(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w1": [[10]], "w2": [[None]]}, "b": {"w1": [[20]], "w2": [[None]]}})
    result = score(tmp_path)
    assert result.ratios.loc["a", "w2"] == math.inf
    assert result.scores["a"] == pytest.approx(0.5)  # 1 of 2 workloads at ratio 1
    assert result.scores["b"] == pytest.approx((4 - 2) / 3 / 2)


def test_single_submission_scores_the_fraction_reached(tmp_path: Path) -> None:
    write_table(tmp_path, {"solo": {"w1": [[10]], "w2": [[None]], "w3": [[3]]}})
    assert score(tmp_path).scores["solo"] == pytest.approx(2 / 3)


def test_cutoff_exactly_at_four_times_is_kept_just_above_is_a_miss(tmp_path: Path) -> None:
    write_table(tmp_path, {"fast": {"w": [[10.0]]}, "edge": {"w": [[40.0]]}, "over": {"w": [[40.001]]}, "mid": {"w": [[25.0]]}})
    result = score(tmp_path)
    assert result.scored_times.loc["edge", "w"] == 40.0 and result.ratios.loc["edge", "w"] == 4.0
    assert result.scored_times.loc["over", "w"] == math.inf
    assert result.scores["edge"] == 0.0 and result.scores["mid"] == pytest.approx(0.5)
    # without the cut-off the ratio stays finite (still beyond r_max, so still 0)
    assert score(tmp_path, ScoringRules(bootstrap=0, cutoff=None)).ratios.loc["over", "w"] == pytest.approx(4.0001)


def test_held_out_rule_variant_miss_makes_the_base_a_miss(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10]]}, "b": {"w": [[20]]}})
    write_run(tmp_path, "a", "w_v", 0, 0, None, base_workload="w", variant="v")
    write_run(tmp_path, "b", "w_v", 0, 0, 30, base_workload="w", variant="v")
    on = score(tmp_path, ScoringRules(bootstrap=0, held_out=("w_v",), held_out_rule=True))
    assert list(on.scored_times.columns) == ["w"]  # the variant leaves the table
    assert on.scored_times.loc["a", "w"] == math.inf and on.scores["b"] == 1.0
    off = score(tmp_path)  # rule off: the variant is a workload like any other
    assert list(off.scored_times.columns) == ["w", "w_v"]
    assert off.scores["a"] == pytest.approx(0.5) and off.scores["b"] == pytest.approx((4 - 2) / 3 / 2 + 0.5)


def test_a_held_out_name_without_runs_is_refused_unless_a_round_draws_it(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10]]}, "b": {"w": [[20]]}})
    with pytest.raises(PacerUserError, match=r"^held-out workload 'w_typo' has no runs to score \(workloads with runs: w\)$"):
        score(tmp_path, ScoringRules(bootstrap=0, held_out=("w_typo",), held_out_rule=True))
    drawn = score(tmp_path, ScoringRules(bootstrap=0, held_out=("imagenet_resnet_large_bn_init",), held_out_rule=True))  # v0.5's draw may be absent
    assert "no held-out workload (imagenet_resnet_large_bn_init) has a run here, so the held-out rule changes nothing" in drawn.warnings


def test_held_out_rule_base_miss_makes_the_variant_a_miss() -> None:
    t = np.array([[np.inf, 5.0], [10.0, np.inf], [10.0, 5.0]])  # columns: base, variant
    out = apply_held_out(t, [(1, 0)], None)
    assert np.isinf(out[0]).all() and np.isinf(out[1]).all() and (out[2] == [10.0, 5.0]).all()


def test_held_out_variant_must_be_within_4x_of_the_fastest_that_reached_the_base() -> None:
    # a misses the base but is fastest on the variant: it does not set the variant's best time.
    t = np.array([[np.inf, 1.0], [10.0, 5.0], [12.0, 19.0], [11.0, 50.0]])  # columns: base, variant
    out = apply_held_out(t, [(1, 0)], 4.0)
    assert np.isinf(out[0]).all() and (out[1] == [10.0, 5.0]).all() and (out[2] == [12.0, 19.0]).all()
    assert np.isinf(out[3]).all()  # 50 > 4 x 5: reached, but 10x slower than the fastest


def test_a_missing_cell_is_a_miss_with_a_warning_never_a_better_ratio(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w1": [[10]], "w2": [[10]]}, "b": {"w1": [[20]]}, "c": {"w1": [[30]], "w2": [[30]]}})
    result = score(tmp_path)
    assert math.isinf(result.times.loc["b", "w2"]) and result.ratios.loc["c", "w2"] == 3.0
    assert result.scores["a"] == 1.0 and result.scores["b"] == pytest.approx((4 - 2) / 3 / 2)
    assert "1 submission/workload cell(s) have no run and count as misses: b/w2" in result.warnings
    write_table(tmp_path / "hole", {"a": {"w1": [[10]]}, "b": {"w1": [[20]], "w2": [[40]]}})
    holed = score(tmp_path / "hole")
    assert holed.ratios.loc["b", "w2"] == 1.0 and holed.scores["a"] == 0.5  # a's hole does not make b's time a tie or a's a win


def test_ratios_against_a_named_reference_and_reference_misses(tmp_path: Path) -> None:
    write_table(tmp_path, {"ref": {"w1": [[20]], "w2": [[None]]}, "new": {"w1": [[10]], "w2": [[7]]}})
    result = score(tmp_path, ScoringRules(bootstrap=0, reference="ref"))
    assert result.ratios.loc["new", "w1"] == 0.5 and result.ratios.loc["new", "w2"] == 1.0  # reference missed w2
    assert result.scores["new"] == 1.0 and result.scores["ref"] == 0.5
    with pytest.raises(PacerUserError, match="reference submission 'nope' has no external runs here"):
        score(tmp_path, ScoringRules(bootstrap=0, reference="nope"))


def test_geometric_mean_speedup_counts_a_miss_as_budget_plus_one(tmp_path: Path) -> None:
    write_table(tmp_path, {"ref": {"w1": [[20]], "w2": [[None]]}, "new": {"w1": [[10]], "w2": [[50]]}}, budget=100.0)
    result = score(tmp_path, ScoringRules(bootstrap=0, reference="ref", cutoff=None))
    assert result.speedup["new"] == pytest.approx(math.sqrt(2.0 * 101.0 / 50.0))
    assert result.speedup["ref"] == pytest.approx(1.0)


def test_a_speedup_where_neither_side_reached_a_target_is_not_a_measured_tie(tmp_path: Path) -> None:
    write_table(tmp_path, {"adamw": {"w": [[None]] * 3}, "idle": {"w": [[None]] * 3}, "fast": {"w": [[40], [50], [60]]}}, budget=100.0)
    result = score(tmp_path, ScoringRules(bootstrap=200))
    assert result.speedup_reference == "adamw" and result.speedup["adamw"] == 1.0 and result.speedup["fast"] == pytest.approx(101 / 50)
    assert math.isnan(result.speedup["idle"]) and result.speedup_ci.loc["idle"].isna().all()  # both missed everything: n/a, not 1.000 [1, 1]
    assert speedup_text(result.leaderboard().loc["idle"]) == "n/a" and result.speedup_ci.loc["fast"].notna().all()


def test_speedup_interval_comes_with_the_score_intervals_in_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    # new is 2x faster on w1 in every study; on w2 its studies are 1x, 2x, 4x faster
    write_table(tmp_path, {"ref": {"w1": [[20], [20], [20]], "w2": [[40], [40], [40]]}, "new": {"w1": [[10], [10], [10]], "w2": [[40], [20], [10]]}})
    result = score(tmp_path, ScoringRules(reference="ref", bootstrap=400, seed=1))
    board = result.leaderboard()
    assert board.loc["new", "speedup"] == pytest.approx(2.0)  # sqrt(2 x 40 / 20)
    lo, hi = board.loc["new", ["speedup_lo", "speedup_hi"]]
    # a replicate's median of new's w2 studies {40, 20, 10} is 40 (or 10) with probability 7/27 > 2.5%:
    # the interval runs from sqrt(2 x 1) to sqrt(2 x 4)
    assert [lo, hi] == pytest.approx([math.sqrt(2), math.sqrt(8)]) and board.loc["ref", ["speedup_lo", "speedup_hi"]].tolist() == [1.0, 1.0]
    assert main(["score", str(tmp_path), "--reference", "ref", "--bootstrap", "400", "--seed", "1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["speedup"]["new"] == pytest.approx(2.0) and data["speedup_ci"]["new"] == pytest.approx([lo, hi])
    assert main(["score", str(tmp_path), "--reference", "ref", "--bootstrap", "400", "--seed", "1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert "speedup over ref" in text[1] and f"2.000 [{lo:.3f}, {hi:.3f}]" in next(line for line in text if " new " in line)
    assert "speedup_lo" not in score(tmp_path, ScoringRules(reference="ref", bootstrap=0)).leaderboard()
    assert score(tmp_path, ScoringRules(bootstrap=400)).speedup_ci is None  # no reference, no speedup


def test_one_study_gives_a_speedup_without_an_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path, {"ref": {"w": [[20]]}, "new": {"w": [[10]]}})
    assert main(["score", str(tmp_path), "--reference", "ref", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["speedup"] == pytest.approx({"ref": 1.0, "new": 2.0}) and data["speedup_ci"] is None
    assert main(["score", str(tmp_path), "--reference", "ref"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if " new " in line)
    assert "2.000" in row and "[" not in row


def test_step_based_score_uses_steps_to_target(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10]]}, "b": {"w": [[25]]}})
    result = score(tmp_path)
    assert result.trials.set_index("submission").loc["b", "steps_to_validation"] == 2500
    assert result.step_scores["b"] == pytest.approx((4 - 2.5) / 3)


def test_closed_form_matches_a_fine_trapezoid_on_random_profiles() -> None:
    rng = np.random.default_rng(1)
    r = np.where(rng.random((40, 6, 8)) < 0.2, np.inf, 1 + rng.exponential(1.5, (40, 6, 8)))
    r[:, 0, :] = np.minimum(r[:, 0, :], 1.0)
    exact = closed_form_scores(r, 4.0, 8)
    assert np.allclose(exact, trapezoid_scores(r, 4.0, 8, points=20001), atol=1e-4)
    assert not np.allclose(exact, trapezoid_scores(r, 4.0, 8, points=100), atol=1e-6)  # the 100-point rule is an approximation


def test_bootstrap_interval_covers_a_known_median() -> None:
    """25 self-tuning studies of lognormal times: the population median is exp(mu); the 95%
    percentile interval of the median over studies should cover it about 95% of the time."""
    rng = np.random.default_rng(7)
    mu, hits, repeats = 3.0, 0, 150
    for _ in range(repeats):
        cube = np.exp(mu + 0.5 * rng.standard_normal((1, 1, 25, 1)))
        boot = bootstrap_times(cube, np.array([[25]]), np.ones((1, 1, 25), dtype=int), 400, rng)[:, 0, 0]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hits += lo <= math.exp(mu) <= hi
    assert 0.88 <= hits / repeats <= 0.995


@pytest.fixture(scope="module")
def speedup_coverage(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Issue 21: the share of SPEEDUP_EXPERIMENTS simulated experiments whose 95% speedup interval
    covers the true speedup. Each experiment has 5 workloads x 3 self-tuning studies of lognormal
    times (`test_compare.lognormal_experiments`: the true geometric-mean speedup of the medians is
    exp(mean delta)). Experiment 0 is written as run records and scored by `score_frame`; the
    others go, in batches, through the functions `rules.bootstrap` uses for the leaderboard's
    interval (`bootstrap_times`, `speedup_array`, `percentile_interval`). 1000 replicates, the
    leaderboard's default, so the coverage is that of what users get."""
    from test_compare import lognormal_experiments

    root = tmp_path_factory.mktemp("coverage")
    rng = np.random.default_rng(0)
    times, true = lognormal_experiments(rng, SPEEDUP_EXPERIMENTS, 3)
    write_table(root, {name: {f"w{w}": [[float(t)] for t in times[0, s, w]] for w in range(5)} for s, name in enumerate(["ref", "new"])},
                ruleset="self", budget=1e6)
    on_disk = score(root, ScoringRules(reference="ref", bootstrap=1000, seed=0)).leaderboard().loc["new"]
    assert on_disk.speedup == pytest.approx(float(np.exp(np.mean(np.log(np.median(times[0, 0], -1)) - np.log(np.median(times[0, 1], -1))))))
    hits = int(on_disk.speedup_lo <= true <= on_disk.speedup_hi)
    for batch in np.array_split(times[1:], SPEEDUP_EXPERIMENTS // 50):  # batches bound the memory of the resampled cube
        cube = batch.reshape(-1, 5, 3, 1)  # (experiment x submission, workload, study, trial)
        t_b = bootstrap_times(cube, np.full(cube.shape[:2], 3), np.ones(cube.shape[:3], dtype=int), 1000, rng)
        speedup = speedup_array(t_b.reshape(1000, len(batch), 2, 5), 0, np.full(5, 1e6))[..., 1]
        lo, hi = percentile_interval(speedup, 0.95)
        hits += int(((lo <= true) & (true <= hi)).sum())
    return hits / SPEEDUP_EXPERIMENTS


SPEEDUP_EXPERIMENTS = 1000
"""Issue 21 asks for 200; this interval covers about 0.98 (conservative: the bootstrap of a median
of 3 studies), near the band's top, where 200 experiments (standard error 0.01) land above
0.99 for about 1 seed in 11 (199 of 200 with this one). 1,000 (standard error 0.0044) decide."""


def test_speedup_interval_covers_the_true_speedup_in_90_to_99_percent_of_the_experiments(speedup_coverage: float) -> None:
    assert 0.90 <= speedup_coverage <= 0.99


def test_bootstrap_resamples_trials_within_studies() -> None:
    cube = np.array([[[[1.0, 100.0], [2.0, 200.0], [3.0, 300.0]]]])
    boot = bootstrap_times(cube, np.array([[3]]), np.full((1, 1, 3), 2), 2000, np.random.default_rng(0))[:, 0, 0]
    assert set(np.unique(boot)) <= {1.0, 2.0, 3.0, 100.0, 200.0, 300.0}
    assert (boot >= 100).mean() > 0.05  # a study whose draws miss its fast trial


def test_corrupt_and_partial_records_are_skipped_with_a_warning(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10, 12]]}})
    broken = write_run(tmp_path, "b", "w", 0, 0, 5)
    broken.run_path.write_text("{not json", encoding="utf-8")
    torn = write_run(tmp_path, "c", "w", 0, 0, 8)
    with open(torn.evals_path, "a", encoding="utf-8") as f:
        f.write('{"global_step": 99, "accumulated_sub')  # a kill mid-write
    bad_middle = write_run(tmp_path, "d", "w", 0, 0, 20)
    lines = bad_middle.evals_path.read_text().splitlines()
    bad_middle.evals_path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = load_results(tmp_path)
    messages = [str(w.message) for w in caught]
    assert any(str(broken.run_path) in m for m in messages)
    assert any(str(bad_middle.evals_path) in m and "line 2" in m for m in messages)
    assert not any(str(torn.path) in m for m in messages)  # a torn tail is normal, not a warning
    result = score_frame(df, NO_BOOT)
    assert set(result.scores.index) == {"a", "c", "d"}
    assert result.times.loc["c", "w"] == 8.0 and result.times.loc["d", "w"] == math.inf  # d kept only its first eval


def test_mixed_fingerprints_and_targets_are_refused_unless_allowed(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 10)
    other = write_run(tmp_path, "b", "w", 0, 0, 12, fingerprint={"id": "fp-other"})
    with pytest.raises(PacerUserError, match="2 hardware fingerprints") as e:
        score(tmp_path)
    assert str(other.path) in str(e.value)
    assert "fingerprints" in score(tmp_path, allow_mixed=True).warnings[0]
    write_run(tmp_path, "b", "w", 0, 0, 12, target=0.8)
    with pytest.raises(PacerUserError, match="workload w has 2 different targets"):
        score(tmp_path)


def test_imported_duplicate_reruns_keep_the_longest_and_are_reported(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, None, evals=2, experiment="exp", source="algoperf:v0.5")
    write_run(tmp_path, "a", "w", 0, 0, 30, evals=6, experiment="exp-2024-05-01-10-00-00", source="algoperf:v0.5")
    result = score(tmp_path)
    assert result.times.loc["a", "w"] == 30 and "duplicate rerun" in result.warnings[0]


def test_two_of_pacers_records_claiming_one_cell_are_refused(tmp_path: Path) -> None:
    first = write_run(tmp_path, "a", "w", 0, 0, None, evals=2, experiment="exp")
    second = write_run(tmp_path, "a", "w", 0, 0, 30, evals=6, experiment="exp-again")
    with pytest.raises(PacerUserError) as e:
        score(tmp_path)
    assert str(e.value) == (f"2 run records claim the cell external/a/w/0/0: {' and '.join(sorted([str(first.path), str(second.path)]))}; "
                            "score one experiment at a time, or move the extra records aside")


def test_parquet_cache_is_reused_and_invalidated_when_a_run_changes(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10]]}})
    first = load_results(tmp_path, cache=True)
    cache = tmp_path / ".pacer_results.parquet"
    stamp = cache.stat().st_mtime_ns
    pd.testing.assert_frame_equal(load_results(tmp_path, cache=True), first)
    assert cache.stat().st_mtime_ns == stamp
    run = RunDir(next(tmp_path.rglob("trial_0")))
    run.append_eval({"global_step": 5000, "accumulated_submission_time": 50.0, "validation/accuracy": 0.99})
    os.utime(run.evals_path, ns=(stamp + 10**9, stamp + 10**9))
    assert len(load_results(tmp_path, cache=True)) == len(first) + 1
    write_run(tmp_path, "b", "w", 0, 0, 20)
    assert set(load_results(tmp_path, cache=True)["submission"]) == {"a", "b"}


def test_empty_root_and_unknown_ruleset_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(PacerUserError, match="no runs"):
        score_frame(load_results(tmp_path), NO_BOOT)
    write_table(tmp_path, {"a": {"w": [[10]]}}, ruleset="weird")
    with pytest.raises(PacerUserError, match="unknown ruleset 'weird'"):
        score(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_score_verb_json_table_and_errors(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w1": [[10], [11], [12]], "w2": [[5], [6], [None]]}, "b": {"w1": [[20], [21], [22]], "w2": [[4], [4], [4]]}})
    out = run_cli("score", str(tmp_path), "--format", "json", "--bootstrap", "100")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["scores"]["b"] == pytest.approx(((4 - 21 / 11) / 3 + 1) / 2)  # medians: a 11 and 6, b 21 and 4
    assert data["scores"]["a"] == pytest.approx((1 + (4 - 1.5) / 3) / 2)
    assert data["times"]["a"]["w2"] == 6.0 and set(data["p_rank1"]) == {"a", "b"}
    assert (tmp_path / "scores" / "times.csv").exists() and (tmp_path / "scores" / "scores.parquet").exists()


def test_score_verb_table_and_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path, {"a": {"w1": [[10]], "w2": [[None]]}, "b": {"w1": [[20]], "w2": [[4]]}})
    assert main(["score", str(tmp_path), "--bootstrap", "0", "--out", str(tmp_path / "tables")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["1", "b", f"{(1 + 2 / 3) / 2:.4f}"] for line in lines)
    assert any(line.split() == ["a", "10.0", "miss"] for line in lines)
    assert lines[-1] == f"tables (times, scores; CSV and Parquet, replaced on each run): {tmp_path / 'tables'}" and (tmp_path / "tables" / "scores.csv").exists()
    assert main(["score", str(tmp_path), "--reference", "nope"]) == 2
    assert capsys.readouterr().err.startswith("pacer: error: reference submission 'nope' has no external runs here (submissions with external runs: a, b)")
    assert main(["score", str(tmp_path / "missing")]) == 2
    assert main(["score", str(tmp_path), "--compat", "other"]) == 2


def test_score_verb_held_out_and_no_cutoff_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path, {"a": {"w": [[10]]}, "b": {"w": [[45]]}})
    write_run(tmp_path, "a", "w_v", 0, 0, None, base_workload="w", variant="v")
    write_run(tmp_path, "b", "w_v", 0, 0, 30, base_workload="w", variant="v")
    assert main(["score", str(tmp_path), "--format", "json", "--bootstrap", "0", "--held-out", "w_v", "--no-cutoff"]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    assert scores == {"a": 0.0, "b": 1.0}  # a missed the held-out variant; b's 45 s survives without the cut-off
    assert main(["score", str(tmp_path), "--format", "json", "--bootstrap", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["scores"]["b"] == pytest.approx(0.5)  # w: cut (45 > 40); w_v: reached alone


# ---------------------------------------------------------------- intervals, clocks, contention


def test_one_study_per_cell_gives_no_intervals_in_any_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path, {"a": {"w1": [[10, 12]], "w2": [[5]]}, "b": {"w1": [[20]], "w2": [[4, 9]]}})
    result = score(tmp_path, ScoringRules(bootstrap=100))
    assert result.score_ci is None and result.time_ci is None and result.p_rank1 is None
    assert result.intervals_note == "no intervals: one study per submission and workload; a bootstrap needs at least 2"
    assert "score_lo" not in result.leaderboard() and "p_rank1" not in result.leaderboard()
    assert main(["score", str(tmp_path), "--format", "json", "--bootstrap", "100"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["score_ci"] is None and data["p_rank1"] is None and data["intervals_note"] == result.intervals_note
    assert main(["score", str(tmp_path), "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    assert "95% CI" not in text and "P(rank 1)" not in text and "[" not in text
    assert result.intervals_note in text.splitlines()


def test_three_studies_keep_their_intervals_and_one_study_cells_lose_their_time_interval(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w1": [[10], [11], [12]], "w2": [[5], [6], [7]]}, "b": {"w1": [[20], [21], [22]], "w2": [[4], [4], [4]]}})
    full = score(tmp_path, ScoringRules(bootstrap=100))
    assert full.intervals_note is None and full.score_ci is not None and full.p_rank1 is not None and len(full.time_ci) == 4
    write_table(tmp_path / "partial", {"a": {"w1": [[10], [11], [12]], "w2": [[5]]}, "b": {"w1": [[20], [21], [22]], "w2": [[4], [4]]}})
    partial = score(tmp_path / "partial", ScoringRules(bootstrap=100))
    assert partial.score_ci is not None and ("a", "w2") not in partial.time_ci.index and len(partial.time_ci) == 3
    assert partial.intervals_note.startswith("intervals hold 1 of 4 submission/workload cells fixed")
    assert score(tmp_path / "partial", NO_BOOT).intervals_note == "no intervals: bootstrap disabled (--bootstrap 0)"


def test_normalized_runs_compare_across_hardware_wall_runs_do_not(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 10, clock="normalized")
    write_run(tmp_path, "b", "w", 0, 0, 12, clock="normalized", fingerprint={"id": "fp-other"})
    result = score(tmp_path)
    assert result.warnings == [] and result.clocks() == {"w": "normalized"}
    assert result.clock_note() == "times in reference seconds (normalized clock)"
    write_run(tmp_path, "a", "v", 0, 0, 10)  # older records: no clock block, so wall
    write_run(tmp_path, "b", "v", 0, 0, 12, clock="wall", fingerprint={"id": "fp-other"})
    with pytest.raises(PacerUserError, match="wall-clock runs come from 2 hardware fingerprints"):
        score(tmp_path)
    mixed = score(tmp_path, allow_mixed=True)
    assert mixed.clock_note() == "times in reference seconds (normalized clock) (w); wall-clock seconds (v)"


def test_one_workload_timed_by_two_clocks_is_refused_unless_allowed(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 10, clock="normalized")
    wall = write_run(tmp_path, "b", "w", 0, 0, 12)
    with pytest.raises(PacerUserError, match=r"workload w mixes 2 clocks \(normalized: 1 runs, .*; wall: 1 runs") as e:
        score(tmp_path)
    assert str(wall.path) in str(e.value) and "--allow-mixed" in str(e.value)
    assert "mixes 2 clocks" in score(tmp_path, allow_mixed=True).warnings[0]
    write_run(tmp_path, "c", "w", 0, 0, 12, clock="sundial")
    with pytest.raises(PacerUserError, match="unknown clock kind 'sundial'"):
        score(tmp_path, allow_mixed=True)


def test_score_verb_names_the_clock_and_warns_of_contended_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    flagged = [write_run(tmp_path, "a", "w", 0, trial, 10 + trial, clock="normalized", contended=True) for trial in range(4)]
    write_run(tmp_path, "b", "w", 0, 0, 12, clock="normalized", contended=False)
    write_run(tmp_path, "c", "w", 0, 0, 13, clock="normalized")
    assert main(["score", str(tmp_path), "--bootstrap", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ruleset: external; times in reference seconds (normalized clock)"
    assert "time to target (miss = not reached); times in reference seconds (normalized clock):" in lines
    warning = [line for line in lines if "contended" in line]
    assert warning == ["warning: 4 runs were flagged contended (their machine was oversubscribed; their times may be inflated): "
                       + ", ".join(str(r.path) for r in flagged[:3]) + ", ..."]
    assert main(["score", str(tmp_path), "--format", "json", "--bootstrap", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["contended_runs"] == [str(r.path) for r in flagged]
    assert data["clock"] == {"by_workload": {"w": "normalized"}, "note": "times in reference seconds (normalized clock)"}


def test_wall_clock_runs_without_contention_say_so_and_warn_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    write_table(tmp_path, {"a": {"w": [[10]]}, "b": {"w": [[12]]}})
    assert main(["score", str(tmp_path), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ruleset: external; times in wall-clock seconds" and "warning" not in out
