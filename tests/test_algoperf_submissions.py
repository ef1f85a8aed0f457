"""AlgoPerf PyTorch submission files run unmodified: `pacer run submission=path/to/submission.py`
and `pacer sweep` with such a file, one file per convention of the leaderboard files
(tests/algoperf_style/README.md); the `algoperf`/`absl` stand-ins never shadow a real package;
a file that fails to size a batch leaves an `error` record; one that fails to import is bad input: one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

from harness.cli import main
from harness.plugins import algoperf_api
from harness.plugins.hparams import SearchSpace

STYLE = REPO / "tests" / "algoperf_style"
TINY = ["workload.num_samples=600", "workload.hidden=16", "max_runtime_sec=600", "--quiet"]


RULESET = {"v05_absl_logger": "self"}
"""The ruleset each convention's file is run under: a file without a search space is self-tuning."""


def record_of(root: Path) -> dict:
    (path,) = root.rglob("run.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("convention", ["list_space", "no_train_state", "v05_absl_logger", "unknown_workload"])
def test_an_algoperf_file_runs_unmodified(convention, results_root, capsys):
    assert main(["run", f"submission={STYLE / convention / 'submission.py'}", f"ruleset={RULESET.get(convention, 'external')}", f"results_root={results_root}",
                 "max_steps=2", "eval_every_steps=2", *TINY]) == 0
    record = record_of(results_root)
    assert record["status"] == "step_cap" and record["submission"] == convention, record.get("error")
    assert record["final"]["num_evals"] == 2


def test_a_list_form_space_gives_point_k_to_trial_k(results_root):
    points = json.loads((STYLE / "list_space" / "tuning_search_space.json").read_text())
    assert main(["run", f"submission={STYLE / 'list_space' / 'submission.py'}", f"results_root={results_root}", "trial=1", "max_steps=1", *TINY]) == 0
    assert record_of(results_root)["hyperparameters"] == points[1]


def test_a_sweep_runs_every_listed_point_in_order_in_every_study(tmp_path, capsys):
    points = json.loads((STYLE / "list_space" / "tuning_search_space.json").read_text())
    args = ["sweep", "experiment=listed", f"results_root={tmp_path}", f"submission={STYLE / 'list_space' / 'submission.py'}", "workload=[mnist1d_mlp]",
            "ruleset=external", "ruleset.num_studies=2", "max_steps=2", "eval_every_steps=2", *TINY[:-1]]
    assert main(args) == 0
    records = {(r["study"], r["trial"]): r for r in (json.loads(p.read_text()) for p in tmp_path.rglob("run.json"))}
    assert sorted(records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(records[(study, trial)]["hyperparameters"] == points[trial] for study, trial in records)
    assert {r["status"] for r in records.values()} == {"step_cap"}


@pytest.mark.parametrize("convention", ["no_train_state", "v05_absl_logger", "unknown_workload"])
def test_a_sweep_runs_an_algoperf_file_unmodified(convention, tmp_path, capsys):
    args = ["sweep", f"experiment={convention}", f"results_root={tmp_path}", f"submission={STYLE / convention / 'submission.py'}", "workload=[mnist1d_mlp]",
            f"ruleset={RULESET.get(convention, 'external')}", "ruleset.num_studies=1", "ruleset.num_trials=2", "max_steps=2", "eval_every_steps=2", *TINY[:-1]]
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("run.json")]
    listed = {"unknown_workload": 1}  # its list-form space has one point: one trial, whatever num_trials says
    assert len(records) == listed.get(convention, 2) and {r["status"] for r in records} == {"step_cap"}, [r.get("error") for r in records]


def test_an_unknown_workload_gets_the_reference_batch_size_with_a_warning(results_root, capsys):
    assert main(["run", f"submission={STYLE / 'unknown_workload' / 'submission.py'}", f"results_root={results_root}", "max_steps=1", *TINY]) == 0
    record = record_of(results_root)
    assert record["batch_size"] == 128  # configs/workload/mnist1d_mlp.yaml batch_size
    assert record["warnings"] == ["get_batch_size('mnist1d_mlp') raised ValueError: Unsupported workload name: mnist1d_mlp.; using the workload's reference batch size 128"]
    err = capsys.readouterr().err
    warned = err.index("pacer: warning: get_batch_size('mnist1d_mlp') raised ValueError")
    assert warned < err.index("step 1"), "the warning comes when the batch size is chosen, before training"


def test_a_file_that_fails_to_import_is_one_line_naming_file_and_line(tmp_path, results_root, capsys):
    source = (STYLE / "list_space" / "submission.py").read_text().replace("import torch\n", "import torch\nimport jax\n")
    (tmp_path / "needs_jax.py").write_text(source)
    (tmp_path / "tuning_search_space.json").write_text((STYLE / "list_space" / "tuning_search_space.json").read_text())
    line = source.splitlines().index("import jax") + 1
    assert main(["run", f"submission={tmp_path / 'needs_jax.py'}", f"results_root={results_root}", *TINY]) == 2
    assert capsys.readouterr().err.strip() == (f"pacer: error: submission file {tmp_path / 'needs_jax.py'}: importing it raised ModuleNotFoundError: "
                                               f"No module named 'jax' ({tmp_path / 'needs_jax.py'}, line {line})")
    assert not results_root.exists() or not list(results_root.rglob("run.json"))


def test_a_get_batch_size_that_fails_otherwise_leaves_an_error_record(tmp_path, results_root):
    source = (STYLE / "list_space" / "submission.py").read_text().replace("  return 64\n", "  return 64 // 0\n")
    (tmp_path / "submission.py").write_text(source)
    (tmp_path / "tuning_search_space.json").write_text(json.dumps([{"learning_rate": 0.05, "one_minus_beta1": 0.1}]))
    assert main(["run", f"submission={tmp_path / 'submission.py'}", f"results_root={results_root}", *TINY]) == 1
    record = record_of(results_root)
    assert record["status"] == "error" and "ZeroDivisionError" in record["error"]


@pytest.mark.parametrize(("content", "expected"), [
    ("def get_batch_size(name):\n  return 1\n", "not an AlgoPerf submission: no top-level init_optimizer_state, update_params, data_selection"),
    ("def update_params(:\n", "not valid Python"),
])
def test_a_file_that_is_not_a_submission_is_one_line_and_exit_2(content, expected, tmp_path, results_root, capsys):
    (tmp_path / "submission.py").write_text(content)
    assert main(["run", f"submission={tmp_path / 'submission.py'}", f"results_root={results_root}", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pacer: error: submission file {tmp_path / 'submission.py'}: ") and expected in err[0], err
    assert not results_root.exists()


@pytest.mark.parametrize(("space", "expected"), [
    ("42", "expected an object of hyperparameters or a list of points (AlgoPerf's two forms), got int"),
    ('[{"a": 1}, 2]', "a list-form search space must be a non-empty list of objects of hyperparameter values"),
    ('[{"a": 1}, {"b": 1}]', "point 1 has names b, point 0 has a"),
])
def test_a_search_space_of_neither_form_is_one_line_and_exit_2(space, expected, tmp_path, results_root, capsys):
    (tmp_path / "submission.py").write_text((STYLE / "list_space" / "submission.py").read_text())
    (tmp_path / "tuning_search_space.json").write_text(space)
    assert main(["run", f"submission={tmp_path / 'submission.py'}", f"results_root={results_root}", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pacer: error: search space {tmp_path / 'tuning_search_space.json'}: {expected}"
    assert not results_root.exists()


def test_a_file_without_a_search_space_under_external_tuning_is_one_line_and_exit_2(tmp_path, results_root, capsys):
    (tmp_path / "submission.py").write_text((STYLE / "list_space" / "submission.py").read_text())
    assert main(["run", f"submission={tmp_path / 'submission.py'}", "ruleset=external", f"results_root={results_root}", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pacer: error: submission {tmp_path.name}: {tmp_path / 'submission.py'} (no tuning_search_space.json: self-tuning) "
                                               "cannot run under the external ruleset"), err
    assert "ruleset=self" in err[0] and not results_root.exists()


def test_a_multirun_with_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    file = STYLE / "list_space" / "submission.py"
    assert main(["run", "-m", f"submission={file}", f"results_root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pacer sweep submission={file}" in err[0], err


def test_a_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", f"submission={tmp_path / 'nope.py'}"]) == 2
    assert capsys.readouterr().err.strip() == f"pacer: error: submission file {tmp_path / 'nope.py'}: no such file"


def test_stand_ins_only_for_packages_the_file_imports_and_no_real_one_provides(tmp_path, monkeypatch):
    real = tmp_path / "site" / "algoperf"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m.split(".")[0] in (*algoperf_api.ALGOPERF_ROOTS, "absl")]:
        monkeypatch.delitem(sys.modules, name)
    assert algoperf_api.install_for("import torch\n") == []
    assert algoperf_api.install_for("from algoperf import spec\nfrom absl import logging\n") == ["absl"]
    import algoperf

    assert algoperf.REAL
    assert algoperf_api.install_for("from algorithmic_efficiency import spec\n") == ["algorithmic_efficiency"]
    from algorithmic_efficiency import spec

    from harness.core.spec import ForwardPassMode

    assert spec.ForwardPassMode is ForwardPassMode and spec.RandomState is int


def test_list_form_points_are_the_feasible_values():
    space = SearchSpace.from_mapping([{"lr": 0.1, "wd": 0.0}, {"lr": 0.2, "wd": 0.0}], "listed")
    assert space.points == ({"lr": 0.1, "wd": 0.0}, {"lr": 0.2, "wd": 0.0})
    space.check({"lr": 0.2}, "x")
    with pytest.raises(Exception, match="lr=0.3 is outside its search space"):
        space.check({"lr": 0.3}, "x")


def test_a_submission_config_names_the_file_and_its_format():
    from harness.core.errors import PacerUserError
    from harness.plugins.submissions import load_submission

    loaded = load_submission({"name": "listed", "file": str(STYLE / "list_space" / "submission.py"), "format": "algoperf"})
    assert loaded.search_space.points is not None and len(loaded.search_space.points) == 2 and callable(loaded.impl.update_params)
    with pytest.raises(PacerUserError, match="format: 'jax' is not one of pacer, algoperf"):
        load_submission({"name": "listed", "file": str(STYLE / "list_space" / "submission.py"), "format": "jax"})
