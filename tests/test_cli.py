"""`pacer run` bad input: one clear line on stderr, exit code 2, and nothing trained or written."""

from __future__ import annotations

import pytest
from conftest import pacer


@pytest.mark.parametrize(("args", "expected"), [
    (["workload=nope"], "unknown workload 'nope' (valid: "),  # the list grows with every workload
    (["submission=nope"], "unknown submission 'nope' (valid: adabelief, adadagrad, adahessian, adamp, adamw"),
    (["hparams.nope=1"], "unknown hyperparameter 'nope'"),
    (["hparams.learning_rate=5.0"], "learning_rate=5.0 is outside its search space [0.0003, 0.03] (log)"),
    (["hparams.beta2=0.9"], "beta2=0.9 is outside its search space {0.999}"),
    (["variant=nope"], "unknown variant 'nope' of workload mnist1d_mlp (valid: deep, gelu)"),
    (["seed=-1"], "seed=-1 must be an integer >= 0"),
    (["max_steps=0"], "max_steps=0 must be an integer >= 1"),
    (["device=tpu"], "device='tpu' is not one of cpu, cuda"),
    (["nope=1"], "Could not override 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, results_root):
    result = pacer("run", f"results_root={results_root}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacer: error: "), result.stderr
    assert expected in lines[0]
    assert not results_root.exists() or not any(results_root.rglob("run.json"))


def test_unknown_verb_lists_verbs():
    result = pacer("rnu")
    assert result.returncode == 2 and "unknown verb 'rnu' (valid: run" in result.stderr


def test_existing_run_folder_is_refused_without_prompt(results_root):
    args = ["run", f"results_root={results_root}", "max_steps=2", "--quiet"]
    assert pacer(*args).returncode == 0
    again = pacer(*args)
    assert again.returncode == 2
    assert "already holds a run: pass resume=true or overwrite=true" in again.stderr
    assert pacer(*args, "overwrite=true").returncode == 0


def test_resume_of_a_finished_run_does_nothing(results_root):
    args = ["run", f"results_root={results_root}", "max_steps=2", "--quiet"]
    first = pacer(*args)
    record = next(results_root.rglob("run.json")).read_text()
    again = pacer(*args, "resume=true")
    assert again.returncode == 0 and "ended step_cap" in again.stdout and first.stdout == again.stdout
    assert next(results_root.rglob("run.json")).read_text() == record


def test_unwritable_results_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = pacer("run", f"results_root={blocker}")
    assert result.returncode == 2 and "cannot write the results root" in result.stderr
