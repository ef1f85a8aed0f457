"""harness.experiments.default_study: the ranking rule, the per-variant budgets, the same
candidates for every submission, the refusal of scored workloads, and a whole (tiny) study that
writes its record and the chosen default."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from omegaconf import OmegaConf

from harness.core.runner import RunSettings
from harness.experiments import default_study
from harness.experiments.run_config import split_workload_id
from harness.plugins.hparams import Range, SearchSpace
from harness.plugins.search import study_points
from harness.plugins.submissions import load_submission
from harness.plugins.workloads import CONFIG_DIR, suite_workloads, workload_config


def _trial(index: int, times: list[float | None], best: list[float | None], directions=("max", "max")) -> dict[str, object]:
    results = {f"w{i}": {"time_to_target": t, "best_validation": b, "direction": d} for i, (t, b, d) in enumerate(zip(times, best, directions, strict=True))}
    return {"trial": index, "results": results}


def test_rank_by_reached_then_time_then_metric():
    trials = [
        _trial(0, [100, None], [0.9, 0.5]),
        _trial(1, [300, 400], [0.8, 0.8]),
        _trial(2, [200, 200], [0.7, 0.7]),
        _trial(3, [200, 200], [0.9, 0.9]),
    ]
    assert [t["trial"] for t in default_study.ranked(trials, {"w0": 1000, "w1": 1000})] == [3, 2, 1, 0]


def test_times_count_as_fractions_of_each_workloads_budget():
    # Trial 0 needs less raw time on average (200 against 300) but its whole budget on the short
    # workload; trial 1 needs a third of one budget and half of the other.
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


def test_study_runs_get_the_variants_own_budget_as_the_self_tuning_ruleset_gives_it():
    base = workload_config("digits_cnn")
    variant = base["variants"]["silu"]
    assert variant["max_runtime_sec"] != base["max_runtime_sec"]  # else this test could not tell them apart
    multiplier = OmegaConf.load(CONFIG_DIR / "ruleset" / "self.yaml")["budget_multiplier"]
    assert multiplier != 1.0
    settings = default_study.study_settings("digits_cnn_silu")
    assert settings.max_steps is None and settings.stop_at_target
    assert settings.eval_every_steps == variant["eval_every_steps"]
    assert settings.max_runtime_sec == pytest.approx(multiplier * variant["max_runtime_sec"])


def test_the_study_workloads_are_variants_of_three_different_cpu_suite_workloads():
    bases = [split_workload_id(w) for w in default_study.STUDY_WORKLOADS]
    assert len(bases) == 3 and all(variant for _, variant in bases)
    assert len({base for base, _ in bases}) == 3 and {base for base, _ in bases} <= set(suite_workloads("cpu"))


def test_rounded_points_stay_in_range():
    space = SearchSpace({"lr": Range(1e-3, 0.9996, "log")}, "test")
    assert default_study.rounded_point(space, {"lr": 0.9996}) == {"lr": 0.9996}  # 3 digits would be 1.0, past the max
    assert default_study.rounded_point(space, {"lr": 0.0123456}) == {"lr": 0.0123}


@pytest.mark.parametrize("trials", [1, 16])
def test_every_submission_gets_exactly_trials_candidates_the_rounded_halton_points(trials):
    spaces = {name: load_submission(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml"))).search_space
              for name in ("nadamw", "momentum")}
    assert spaces["nadamw"].names() != spaces["momentum"].names()
    for space in spaces.values():
        candidates = default_study.candidate_points(space, trials)
        assert candidates == [default_study.rounded_point(space, p) for p in study_points(space, trials, seed=0, study=0)]
        assert len(candidates) == trials


def test_reuse_needs_the_same_settings_and_threads():
    point = {"lr": 0.1}
    old_settings = {"w": {"eval_every_steps": 2, "budget_sec": 5.0, "clock": "normalized", "validation_target": 0.9}, "seed": 0, "torch_threads": 1}
    previous = {"settings": old_settings, "trials": [{"hyperparameters": point, "results": {"w": {"status": "budget_exhausted", "direction": "max"}}}]}
    key = (json.dumps(point), "w")

    def changed(**w_settings) -> dict[str, object]:
        return old_settings | {"w": old_settings["w"] | w_settings}

    assert key in default_study.reusable_results(previous, old_settings)
    assert key not in default_study.reusable_results(previous, changed(budget_sec=9.0))
    assert key not in default_study.reusable_results(previous, changed(clock="wall"))
    assert key not in default_study.reusable_results(previous, changed(eval_every_steps=3))
    assert key not in default_study.reusable_results(previous, changed(validation_target=0.95))  # recalibrated
    assert key not in default_study.reusable_results(previous, old_settings | {"torch_threads": 2})
    step_based = {"w": {"max_steps": 10, "eval_every_steps": 2, "guard_sec": 5.0, "validation_target": 0.9}, "torch_threads": 1}
    assert default_study.reusable_results(previous | {"settings": step_based}, old_settings) == {}  # the step-ranked protocol's record


@pytest.fixture
def tmp_study(tmp_path, monkeypatch):
    """A study of a copy of momentum.yaml (a trailing comment added) into tmp folders, three
    steps a run; returns the copy's path and the list of jobs run."""
    (tmp_path / "submission").mkdir()
    config = tmp_path / "submission" / "momentum.yaml"
    shutil.copy(CONFIG_DIR / "submission" / "momentum.yaml", config)
    config.write_text(config.read_text() + "# a trailing comment stays\n")
    monkeypatch.setattr(default_study, "SUBMISSION_DIR", tmp_path / "submission")
    monkeypatch.setattr(default_study, "RECORDS_DIR", tmp_path / "records" / "default_points")
    monkeypatch.setattr(default_study, "study_settings", lambda name: RunSettings(seed=0, max_steps=3, eval_every_steps=1, max_runtime_sec=60.0))
    ran = []
    real_run_trial = default_study.run_trial
    monkeypatch.setattr(default_study, "run_trial", lambda job: ran.append(job) or real_run_trial(job))
    return config, ran


def test_a_tiny_study_writes_its_record_and_the_default_through_the_setter_and_extends_by_the_new_points_only(tmp_study, tmp_path, capsys):
    config, ran = tmp_study
    before = config.read_text()
    assert default_study.main(["momentum", "--trials", "2", "--workloads", "teacher_student_relu"]) == 0
    record = json.loads((tmp_path / "records" / "default_points" / "momentum.json").read_text())
    space = load_submission(yaml.safe_load(before)).search_space
    assert [t["hyperparameters"] for t in record["trials"]] == default_study.candidate_points(space, 2)
    assert record["workloads"] == ["teacher_student_relu"] and record["trials"][0]["results"]["teacher_student_relu"]["steps"] == 3
    assert record["settings"]["teacher_student_relu"]["validation_target"] == workload_config("teacher_student")["variants"]["relu"]["validation_target"]
    assert len(ran) == 2

    after = config.read_text()
    head = before[:before.index("\ndefault:\n") + 1]
    assert after.startswith(head) and after.endswith("\n# a trailing comment stays\n")
    written = yaml.safe_load(after)
    assert written["default"] == record["default"] and list(written["default"]) == list(record["default"])
    assert written["provenance"]["study"] == os.path.relpath(tmp_path / "records" / "default_points" / "momentum.json", CONFIG_DIR.parent)
    assert "(teacher_student_relu)" in written["provenance"]["summary"]
    assert yaml.safe_load(before) | {"default": written["default"], "provenance": written["provenance"]} == written

    # Extending the study runs only the new Halton point; the recorded ones are reused as they are.
    ran.clear()
    assert default_study.main(["momentum", "--trials", "3", "--workloads", "teacher_student_relu"]) == 0
    extended = json.loads((tmp_path / "records" / "default_points" / "momentum.json").read_text())
    assert [job[1] for job in ran] == [extended["trials"][2]["hyperparameters"]]
    assert [t["results"] for t in extended["trials"][:2]] == [t["results"] for t in record["trials"]]
    assert default_study.main(["momentum", "--table"]) == 0
    assert f"| `momentum` | `teacher_student_relu` | {extended['chosen_trial']} (halton) |" in capsys.readouterr().out


def test_every_recorded_default_names_a_study_record_that_exists():
    for path in sorted((CONFIG_DIR / "submission").glob("*.yaml")):
        study = (yaml.safe_load(path.read_text()).get("provenance") or {}).get("study")
        if study:
            assert (CONFIG_DIR.parent / study).is_file(), path.name
            assert (CONFIG_DIR.parent / study).parent == default_study.RECORDS_DIR


def test_table_shows_where_each_default_was_tuned_and_a_column_for_every_workload_of_any_record():
    def record(name: str, workloads: list[str], settings: dict[str, dict[str, float]]) -> dict[str, object]:
        result = {"steps_to_target": None, "best_validation": 0.5, "direction": "max", "time_to_target": None}
        return {"submission": name, "workloads": workloads, "chosen_trial": 0, "settings": settings,
                "trials": [{"trial": 0, "source": "halton", "results": {w: dict(result) for w in workloads}}]}

    old = record("adamw", ["mnist1d_cnn"], {"mnist1d_cnn": {"max_steps": 600}})  # an old-protocol record: no target recorded
    new = record("nadamw", ["mnist1d_cnn", "digits_cnn_silu"], {"mnist1d_cnn": {"validation_target": 0.981}, "digits_cnn_silu": {"validation_target": 0.983}})
    lines = default_study.table([old, new]).splitlines()
    assert lines[0].startswith("| submission | default tuned on |") and lines[0].count("best val.") == 2
    assert lines[2] == "| `adamw` | `mnist1d_cnn` | 0 (halton) | 0.5 | - | 0 of 1 |"  # adamw's study did not run digits_cnn_silu
    assert lines[3] == "| `nadamw` | `mnist1d_cnn`, `digits_cnn_silu` | 0 (halton) | 0.5 (0.981) | 0.5 (0.983) | 0 of 2 |"


@pytest.mark.parametrize(("argv", "message"), [
    (["momentum", "--workloads", "nope"], "unknown workload 'nope'"),
    (["momentum", "--workloads", "teacher_student_relu,mnist1d_cnn"], "--workloads: mnist1d_cnn is a base workload, not a variant: the CPU suite's leaderboard scores it"),
    (["momentum", "--workloads", "cifar10"], "--workloads: cifar10 is a base workload, not a variant: the study tunes on variants only"),
    (["momentum", "--workloads", "digits_cnn_wide"], "unknown variant 'wide' of workload digits_cnn"),
    (["momentum", "--trials", "0"], "--trials 0"),
    (["momentum", "lamb"], "unknown submission(s) lamb"),
    (["momentum", "--table"], "no recorded study for momentum"),
])
def test_bad_input_is_one_error_line_before_any_run(argv, message, tmp_study, capsys):
    config, ran = tmp_study
    before = config.read_text()
    assert default_study.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("default_study: error: ") and message in err and err.count("\n") == 1
    assert ran == [] and config.read_text() == before


def test_the_readme_submission_table_shows_where_each_default_was_tuned_as_its_record_says():
    readme = (CONFIG_DIR.parent / "README.md").read_text()
    rows = [line.split(" | ") for line in readme.splitlines() if line.startswith("| `") and "(halton)" in line]
    names = sorted(path.stem for path in (CONFIG_DIR / "submission").glob("*.yaml") if not path.stem.startswith("_"))
    assert sorted(row[0].strip("| `") for row in rows) == names
    for row in rows:
        record = json.loads((default_study.RECORDS_DIR / f"{row[0].strip('| `')}.json").read_text())
        chosen = record["trials"][record["chosen_trial"]]
        reached = sum(result["time_to_target"] is not None for result in chosen["results"].values())
        assert row[1] == ", ".join(f"`{w}`" for w in record["workloads"]), row[0]
        assert row[2] == f"{record['chosen_trial']} (halton)" and row[3] == f"{reached} of {len(record['workloads'])}", row[0]
