"""harness.experiments.default_study: the ranking rule, the per-workload step settings, and a whole
(tiny) study that writes its record and the chosen default."""

from __future__ import annotations

import json
import math

import pytest
from omegaconf import OmegaConf

from harness.core.runner import RunSettings
from harness.experiments import default_study
from harness.experiments.calibration_records import provenance_of, record_path
from harness.plugins.hparams import FeasiblePoints, Range, SearchSpace
from harness.plugins.submissions import load_submission
from harness.plugins.workloads import CONFIG_DIR, workload_config

CALIBRATION_BEST = provenance_of(record_path("mnist1d_cnn"), None)["best"]


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
    assert [t["trial"] for t in default_study.ranked(trials, {"w0": 1000, "w1": 1000})] == [3, 2, 1, 0]


def test_steps_count_as_fractions_of_each_workloads_step_cap():
    # Trial 0 needs fewer raw steps on average (200 against 300) but its whole cap on the short
    # workload; trial 1 needs a third of one cap and half of the other.
    trials = [_trial(0, [300, 100], [0.9, 0.9]), _trial(1, [100, 500], [0.9, 0.9])]
    assert [t["trial"] for t in default_study.ranked(trials, {"w0": 300, "w1": 1000})] == [1, 0]


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
    assert [t["trial"] for t in default_study.ranked(trials, {"w0": 1000, "w1": 1000})] == [1, 0, 3, 2]


def test_study_settings_follow_the_workload_calibration():
    cfg = workload_config("teacher_student")
    settings = default_study.study_settings("teacher_student")
    assert settings.max_steps == math.ceil(4 / 3 * cfg["step_hint"])
    assert settings.eval_every_steps == cfg["calibration"]["eval_every_steps"]
    assert settings.max_runtime_sec == pytest.approx(10 * cfg["max_runtime_sec"])


def test_rounded_points_stay_in_range():
    space = SearchSpace({"lr": Range(1e-3, 0.9996, "log")}, "test")
    assert default_study.rounded_point(space, {"lr": 0.9996}) == {"lr": 0.9996}  # 3 digits would be 1.0, past the max
    assert default_study.rounded_point(space, {"lr": 0.0123456}) == {"lr": 0.0123}


def test_candidates_add_calibration_bests_that_are_points_of_the_space_once():
    best = CALIBRATION_BEST["hyperparameters"]
    space = SearchSpace({name: FeasiblePoints([value]) for name, value in best.items()}, "test")
    sources = [source for source, _ in default_study.candidate_points(space, best, 3, ["mnist1d_cnn", "teacher_student"])]
    # Every Halton point of a one-point space is that point, and so are the default and the
    # calibration best: one candidate, which names its sources.
    assert sources == ["halton = prior_default = calibration_best:mnist1d_cnn/" + CALIBRATION_BEST["submission"]]
    narrower = SearchSpace({name: FeasiblePoints([value]) for name, value in best.items()} | {"learning_rate": Range(1e-4, 1e-3, "log")}, "test")
    assert not any(source.startswith("calibration_best") for source, _ in default_study.candidate_points(narrower, {}, 3, ["mnist1d_cnn"]))  # it lies outside
    wider = SearchSpace({name: FeasiblePoints([value]) for name, value in best.items()} | {"learning_rate": Range(1e-4, 1.0, "log")}, "test")
    candidates = dict((source, point) for source, point in default_study.candidate_points(wider, {}, 2, ["mnist1d_cnn"]))
    assert candidates["calibration_best:mnist1d_cnn/" + CALIBRATION_BEST["submission"]] == best


def test_reuse_needs_the_same_steps_threads_and_a_guard_that_cannot_have_cut_the_run():
    point = {"lr": 0.1}
    old_settings = {"w": {"max_steps": 10, "eval_every_steps": 2, "guard_sec": 5.0}, "torch_threads": 1}
    previous = {"settings": old_settings, "trials": [{"hyperparameters": point, "results": {"w": {"status": "step_cap", "direction": "max"}}}]}
    key = (json.dumps(point), "w")

    def changed(**w_settings) -> dict[str, object]:
        return old_settings | {"w": old_settings["w"] | w_settings}

    assert key in default_study.reusable_results(previous, old_settings)
    assert key in default_study.reusable_results(previous, changed(guard_sec=9.0))
    assert key not in default_study.reusable_results(previous, changed(guard_sec=4.0))
    assert key not in default_study.reusable_results(previous, changed(max_steps=11))
    assert key not in default_study.reusable_results(previous, old_settings | {"torch_threads": 2})
    previous["trials"][0]["results"]["w"]["status"] = "budget_exhausted"
    assert key not in default_study.reusable_results(previous, changed(guard_sec=9.0))
    assert key in default_study.reusable_results(previous, old_settings)
    del previous["trials"][0]["results"]["w"]["direction"]  # an older record's result
    assert key not in default_study.reusable_results(previous, old_settings)


def test_a_tiny_study_writes_its_record_and_the_default_and_extends_by_the_new_points_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(default_study, "study_settings", lambda name: RunSettings(seed=0, max_steps=3, eval_every_steps=1, max_runtime_sec=60.0))
    monkeypatch.setattr(default_study, "TUNING_DIR", tmp_path / "tuning")
    written = {}
    monkeypatch.setattr(default_study, "write_default", lambda name, record: written.update({name: record}))
    ran = []
    real_run_trial = default_study.run_trial
    monkeypatch.setattr(default_study, "run_trial", lambda job: ran.append(job) or real_run_trial(job))
    submission = load_submission(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / "momentum.yaml")))

    assert default_study.main(["momentum", "--trials", "2", "--workloads", "teacher_student"]) == 0
    record = json.loads((tmp_path / "tuning" / "momentum.json").read_text())
    expected = default_study.candidate_points(submission.search_space, dict(submission.default), 2, ["teacher_student"])
    assert [(t["source"], t["hyperparameters"]) for t in record["trials"]] == [(s, p) for s, p in expected]
    assert set(record["trials"][0]["results"]) == {"teacher_student"}
    assert record["trials"][0]["results"]["teacher_student"]["steps"] == 3
    assert written["momentum"]["default"] == record["default"]
    assert len(ran) == len(expected)

    # Extending the study runs only the new Halton point; the recorded ones are reused as they are.
    ran.clear()
    assert default_study.main(["momentum", "--trials", "3", "--workloads", "teacher_student"]) == 0
    extended = json.loads((tmp_path / "tuning" / "momentum.json").read_text())
    assert [job[1] for job in ran] == [extended["trials"][1]["hyperparameters"]]
    assert default_study.main(["momentum", "--table"]) == 0
    assert f"| `momentum` | {extended['chosen_trial']} (" in capsys.readouterr().out
    by_point = {json.dumps(t["hyperparameters"], sort_keys=True): t["results"] for t in record["trials"]}
    assert all(by_point[json.dumps(t["hyperparameters"], sort_keys=True)] == t["results"] for t in extended["trials"] if t["trial"] != 1)


def test_table_has_a_column_for_every_workload_of_any_record():
    def record(name: str, workloads: list[str]) -> dict[str, object]:
        result = {"steps_to_target": None, "best_validation": 0.5, "direction": "max", "time_to_target": None}
        return {"submission": name, "workloads": workloads, "chosen_trial": 0,
                "trials": [{"trial": 0, "source": "halton", "results": {w: dict(result) for w in workloads}}]}

    lines = default_study.table([record("adamw", ["mnist1d_cnn"]), record("nadamw", ["mnist1d_cnn", "digits_cnn"])]).splitlines()
    assert lines[0].count("best val.") == 2 and "digits_cnn" in lines[0]
    assert lines[2].endswith("| - | 0 of 1 |")  # adamw's study did not run digits_cnn


@pytest.mark.parametrize(("argv", "message"), [
    (["momentum", "--workloads", "nope"], "unknown workload 'nope'"),
    (["momentum", "lamb"], "unknown submission(s) lamb"),
    (["momentum", "--table"], "no recorded study for momentum"),
])
def test_bad_input_is_one_error_line_before_any_run(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(default_study, "TUNING_DIR", tmp_path / "tuning")
    monkeypatch.setattr(default_study, "run_trial", lambda job: pytest.fail("no run may start"))
    assert default_study.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("default_study: error: ") and message in err and err.count("\n") == 1
