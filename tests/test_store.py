"""The run record: fsynced appends, atomic replacement, tolerant loading."""

from __future__ import annotations

import json
import math

import pytest

from harness.store import RunDir, load_results, run_path


def make_run(root, trial=0, evals=((1, 0.5), (2, 0.7)), status="reached"):
    run = RunDir(run_path(root, "exp", "external", "sub", "wl", 0, trial))
    run.prepare(resume=False, overwrite=False)
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
    from harness.store import RunExistsError

    run = make_run(tmp_path)
    with pytest.raises(RunExistsError):
        run.prepare(resume=False, overwrite=False)
    run.prepare(resume=True, overwrite=False)
    assert run.exists()
    run.prepare(resume=False, overwrite=True)
    assert not run.exists()
