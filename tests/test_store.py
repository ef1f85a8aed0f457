"""The run record: fsynced appends, atomic replacement, tolerant loading."""

from __future__ import annotations

import json
import math
import re

import pytest

from harness.core.errors import PacerUserError
from harness.core.store import RunDir, load_results, run_path, safe_component


def make_run(root, trial=0, evals=((1, 0.5), (2, 0.7)), status="reached"):
    run = RunDir(run_path(root, "exp", "external", "sub", "wl", 0, trial))
    run.prepare(root, resume=False, overwrite=False)
    for step, acc in evals:
        run.append_eval({"global_step": step, "accumulated_submission_time": step * 1.0, "validation/accuracy": acc})
    run.write_run({"experiment": "exp", "submission": "sub", "workload": "wl", "study": 0, "trial": trial, "status": status,
                   "target": {"metric": "accuracy", "direction": "max", "validation": 0.6, "test": 0.6}})
    return run


def test_torn_last_line_is_ignored(tmp_path):
    run = make_run(tmp_path)
    with open(run.evals_path, "a") as f:
        f.write('{"global_step": 3, "validation/acc')
    assert [r["global_step"] for r in run.read_evals()] == [1, 2]


def test_nonfinite_metrics_round_trip_as_nan(tmp_path):
    run = make_run(tmp_path, evals=((1, float("nan")),))
    assert run.read_evals()[0]["validation/accuracy"] is None
    df = load_results(tmp_path)
    assert math.isnan(df["validation/accuracy"].iloc[0])


def test_write_run_is_atomic_and_leaves_no_temp_files(tmp_path):
    run = make_run(tmp_path)
    run.write_run({"status": "running"})
    assert json.loads(run.run_path.read_text()) == {"status": "running"}
    assert sorted(p.name for p in run.path.iterdir()) == ["evals.jsonl", "run.json"]


def test_loader_gives_one_row_per_eval_with_run_columns(tmp_path):
    make_run(tmp_path, trial=0)
    make_run(tmp_path, trial=1, evals=(), status="running")
    df = load_results(tmp_path)
    assert len(df) == 3
    assert list(df["trial"]) == [0, 0, 1]
    assert list(df["validation_target"]) == [0.6, 0.6, 0.6]
    assert df["global_step"].isna().tolist() == [False, False, True]


def test_loader_skips_corrupt_records_with_a_warning(tmp_path):
    make_run(tmp_path, trial=0)
    bad = make_run(tmp_path, trial=1)
    bad.run_path.write_text("{not json")
    with pytest.warns(UserWarning, match=r"trial_1"):
        df = load_results(tmp_path)
    assert set(df["trial"]) == {0}


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    from harness.core.store import RunExistsError

    run = make_run(tmp_path)
    with pytest.raises(RunExistsError):
        run.prepare(tmp_path, resume=False, overwrite=False)
    run.prepare(tmp_path, resume=True, overwrite=False)
    assert run.exists()
    run.prepare(tmp_path, resume=False, overwrite=True)
    assert not run.exists()


def test_overwrite_removes_the_records_pacer_wrote_and_keeps_every_other_file(tmp_path):
    run = make_run(tmp_path)
    for name in ("checkpoint.pt", ".checkpoint.pt.tmp123", ".run.json.tmp45", ".evals.jsonl.tmp6", "notes.txt"):
        (run.path / name).write_text("x")
    (run.path / "plots").mkdir()
    run.prepare(tmp_path, resume=False, overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == ["notes.txt", "plots"]


@pytest.mark.parametrize("name", ["exp_1", "run-2.v3", "..hidden", "a..b", "expérience", "実験"])
def test_a_single_folder_name_is_a_safe_component(name):
    assert safe_component("experiment", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "/abs", "a\\b", "a\0b"])
def test_a_name_that_is_not_one_folder_is_refused_naming_the_key(name, tmp_path):
    with pytest.raises(PacerUserError, match=r"^submission\.name=.* must be one folder name"):
        run_path(tmp_path, "exp", "external", name, "wl", 0, 0)


def test_a_study_folder_linked_outside_the_results_root_is_refused_and_left_alone(tmp_path):
    outside = make_run(tmp_path / "elsewhere").path.parent
    before = sorted((p.name, p.read_bytes()) for p in (outside / "trial_0").iterdir())
    linked = RunDir(run_path(tmp_path / "root", "exp", "external", "sub", "wl", 0, 0))
    linked.path.parent.parent.mkdir(parents=True)
    linked.path.parent.symlink_to(outside)
    with pytest.raises(PacerUserError, match=re.escape(f"resolves to {outside.resolve() / 'trial_0'}, outside the results root {(tmp_path / 'root').resolve()}")):
        linked.prepare(tmp_path / "root", resume=False, overwrite=True)
    assert sorted((p.name, p.read_bytes()) for p in (outside / "trial_0").iterdir()) == before


def test_clock_and_contention_load_with_defaults_for_older_records(tmp_path):
    old = make_run(tmp_path, trial=0)
    new = make_run(tmp_path, trial=1)
    record = new.read_run()
    record["clock"] = {"kind": "normalized", "unit": "reference s"}
    record["contention"] = {"contended": True, "reasons": ["load average 9.1 on 2 cores", "run queue wait 40%"],
                            "load_average": [9.1, 8.7], "run_queue_wait_fraction": 0.4, "reference_spread": None}
    new.write_run(record)
    new.append_eval({"global_step": 3, "accumulated_submission_time": 2.5, "accumulated_raw_submission_time": 3.1, "validation/accuracy": 0.8})
    runs = load_results(tmp_path).set_index("run_dir")
    assert runs.loc[str(old.path), "clock"].unique().tolist() == ["wall"]  # no clock block: wall
    assert not runs.loc[str(old.path), "contended"].any() and runs.loc[str(old.path), "contention_reasons"].iloc[0] == ""
    assert runs.loc[str(new.path), "clock"].unique().tolist() == ["normalized"]
    assert runs.loc[str(new.path), "contended"].all()
    assert runs.loc[str(new.path), "contention_reasons"].iloc[0] == "load average 9.1 on 2 cores; run queue wait 40%"
    assert runs["accumulated_raw_submission_time"].dtype == float and runs.loc[str(new.path), "accumulated_raw_submission_time"].iloc[-1] == 3.1


def test_extra_numeric_eval_columns_survive_the_cache_even_when_all_null(tmp_path):
    run = make_run(tmp_path, evals=())
    run.append_eval({"global_step": 1, "accumulated_submission_time": 1.0, "accumulated_raw_submission_time": None, "validation/accuracy": 0.5})
    df = load_results(tmp_path, cache=True)
    assert df["accumulated_raw_submission_time"].dtype == float and math.isnan(df["accumulated_raw_submission_time"].iloc[0])
    assert load_results(tmp_path, cache=True)["clock"].tolist() == ["wall"]  # read back from the cache


@pytest.mark.parametrize(("damage", "expected"), [
    ({}, "no submission"),
    ({"target": "accuracy"}, "no target.metric"),
    ({"study": "0"}, "study is '0', not a whole number >= 0"),
    ({"trial": -1}, "trial is -1, not a whole number >= 0"),
    ({"submission": None}, "no submission"),
    ({"status": "finished"}, "status 'finished' is not one of"),
    ({"seed": "zero"}, "seed is 'zero' (str)"),
    ({"target": {"metric": "accuracy", "direction": "max", "validation": "high"}}, "validation_target is 'high' (str)"),
])
def test_a_record_of_the_wrong_shape_is_skipped_with_a_warning_naming_it(tmp_path, damage, expected):
    """Hand-edited, truncated or foreign records: skipped by name, never a crash, the cache
    still written (mixed types would break the Parquet conversion)."""
    make_run(tmp_path, trial=0)
    bad = make_run(tmp_path, trial=1)
    record = {} if damage == {} else json.loads(bad.run_path.read_text()) | damage
    bad.run_path.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=rf"skipping run record .*trial_1/run.json: {re.escape(expected)}"):
        df = load_results(tmp_path, cache=True)
    assert set(df["trial"]) == {0}
    assert bad.run_path.read_text() == json.dumps(record)  # left as it is


def test_eval_values_that_are_not_numbers_are_read_as_missing_with_a_warning(tmp_path):
    run = make_run(tmp_path)
    run.append_eval({"global_step": 3, "accumulated_submission_time": "3.0 s", "validation/accuracy": "high"})
    with pytest.warns(UserWarning, match=r"trial_0/evals.jsonl: 2 value\(s\) of validation/accuracy, accumulated_submission_time are not numbers|"
                                         r"trial_0/evals.jsonl: 2 value\(s\) of accumulated_submission_time, validation/accuracy are not numbers"):
        df = load_results(tmp_path)
    assert df["validation/accuracy"].isna().tolist() == [False, False, True]


def test_loading_an_empty_root_writes_no_cache(tmp_path):
    assert load_results(tmp_path, cache=True).empty
    assert list(tmp_path.iterdir()) == []
