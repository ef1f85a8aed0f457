"""harness.default_study: the ranking rule, the per-workload step settings, and a whole
(tiny) study that writes its record and the chosen default."""

from __future__ import annotations

import json
import math

import pytest

from harness import default_study
from harness.hparams import Range, SearchSpace
from harness.runner import RunSettings
from harness.workloads import workload_config


def _trial(index: int, steps: list[int | None], best: list[float | None], directions=("max", "max")) -> dict[str, object]:
    results = {f"w{i}": {"steps_to_target": s, "best_validation": b, "direction": d} for i, (s, b, d) in enumerate(zip(steps, best, directions, strict=True))}
    return {"trial": index, "results": results}


def test_rank_by_reached_then_steps_then_metric():
    trials = [
        _trial(0, [100, None], [0.9, 0.5]),
        _trial(1, [300, 400], [0.8, 0.8]),
        _trial(2, [200, 200], [0.7, 0.7]),
        _trial(3, [200, 200], [0.9, 0.9]),
    ]
    assert [t["trial"] for t in default_study.ranked(trials)] == [3, 2, 1, 0]


def test_metric_rank_respects_each_workloads_direction_and_diverged_runs_come_last():
    # Nothing reached: an accuracy (max) and a loss (min) workload. Trial 2 has the best accuracy
    # but diverged on the loss workload; trial 3's huge loss must rank as bad, not good.
    directions = ("max", "min")
    trials = [
        _trial(0, [None, None], [0.90, 0.50], directions),
        _trial(1, [None, None], [0.95, 0.40], directions),
        _trial(2, [None, None], [0.99, None], directions),
        _trial(3, [None, None], [0.80, 9.0e9], directions),
    ]
    trials[3]["results"]["w0"]["status"] = "budget_exhausted"
    assert [t["trial"] for t in default_study.ranked(trials)] == [1, 0, 3, 2]


def test_study_settings_follow_the_workload_calibration():
    cfg = workload_config("teacher_student")
    settings = default_study.study_settings("teacher_student")
    assert settings.max_steps == math.ceil(4 / 3 * cfg["step_hint"])
    assert settings.eval_every_steps == cfg["calibration"]["eval_every_steps"]
    assert settings.max_runtime_sec == pytest.approx(2 * cfg["max_runtime_sec"])


def test_rounded_points_stay_in_range():
    space = SearchSpace({"lr": Range(1e-3, 0.9996, "log")}, "test")
    assert default_study.rounded_point(space, {"lr": 0.9996}) == {"lr": 0.9996}  # 3 digits would be 1.0, past the max
    assert default_study.rounded_point(space, {"lr": 0.0123456}) == {"lr": 0.0123}


def test_a_tiny_study_writes_its_record_and_the_default(tmp_path, monkeypatch):
    monkeypatch.setattr(default_study, "study_settings", lambda name: RunSettings(seed=0, max_steps=3, eval_every_steps=1, max_runtime_sec=60.0))
    monkeypatch.setattr(default_study, "TUNING_DIR", tmp_path / "tuning")
    written = {}
    monkeypatch.setattr(default_study, "write_default", lambda name, record: written.update({name: record}))
    assert default_study.main(["momentum", "--trials", "2", "--workloads", "teacher_student"]) == 0
    record = json.loads((tmp_path / "tuning" / "momentum.json").read_text())
    assert [t["source"] for t in record["trials"]] == ["halton", "prior_default"]
    assert set(record["trials"][0]["results"]) == {"teacher_student"}
    assert record["trials"][0]["results"]["teacher_student"]["steps"] == 3
    assert written["momentum"]["default"] == record["default"]


def test_an_unknown_workload_fails_before_any_run():
    with pytest.raises(Exception, match="unknown workload 'nope'"):
        default_study.main(["momentum", "--workloads", "nope"])
