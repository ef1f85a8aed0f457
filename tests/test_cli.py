"""`pacer run` bad input: one clear line on stderr, exit code 2, and nothing trained or written.

Each message is checked through `harness.cli.main` in this interpreter (a fresh one costs seconds
of imports); one case of each kind also runs as a user runs it, `python -m harness` in a fresh
interpreter, where nothing else (an import-time warning, a traceback) may reach stderr."""

from __future__ import annotations

import pytest
from conftest import pacer

from harness.cli import main
from harness.workloads import CONFIG_DIR

# A tiny mnist1d_mlp with a budget no loaded machine exhausts: these runs test the CLI, not the workload.
TINY_RUN = ["workload.num_samples=600", "workload.hidden=16", "max_steps=2", "max_runtime_sec=600", "--quiet"]
BAD_INPUT = [
    (["workload=nope"], "unknown workload 'nope' (valid: "),  # the list grows with every workload
    (["submission=nope"], "unknown submission 'nope' (valid: adabelief, adadagrad, adahessian, adamp, adamw"),
    (["hparams.nope=1"], "unknown hyperparameter 'nope'"),
    (["hparams.learning_rate=5.0"], "learning_rate=5.0 is outside its search space [0.0003, 0.03] (log)"),
    (["hparams.beta2=0.9"], "beta2=0.9 is outside its search space {0.999}"),
    (["hparams.learning_rate=abc"], "learning_rate='abc' is not a number (its search space is [0.0003, 0.03] (log)"),
    (["variant=nope"], "unknown variant 'nope' of workload mnist1d_mlp (valid: deep, gelu)"),
    (["seed=-1"], "seed=-1 must be an integer >= 0"),
    (["max_steps=0"], "max_steps=0 must be an integer >= 1"),
    (["device=tpu"], "device='tpu' is not one of cpu, cuda"),
    (["nope=1"], "Could not override 'nope'. Key 'nope' is not in struct (valid top-level keys: experiment, study, trial, seed,"),
    (["--bogus"], "cannot read the argument '--bogus': arguments are key=value overrides (options and verbs: pacer --help)"),
    (["workload.nope=1"], "Could not override 'workload.nope'. Key 'nope' is not in struct"),
    (["workload=mnist1d_mlp_gelu"], "; for a variant: workload=mnist1d_mlp variant=gelu"),
    (["~workload.reference"], "workload mnist1d_mlp: clock normalized needs `reference.step_sec`"),
    (["workload.reference.step_sec=-1"], "reference.step_sec -1 must be a positive number of seconds"),
    (["workload.clock=sundial"], "clock 'sundial' is not one of wall, normalized"),
    (["workload.eval_every_steps=0"], "eval_every_steps 0 must be an integer >= 1"),
    (["threads=0"], "threads=0 must be an integer >= 1"),
]


def assert_one_error_line(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pacer: error: "), stderr
    assert expected in lines[0]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(args, expected, results_root, capsys):
    assert main(["run", f"results_root={results_root}", *args]) == 2
    assert_one_error_line(capsys.readouterr().err, expected)
    assert not results_root.exists() or not any(results_root.rglob("run.json"))


def test_bad_input_from_a_fresh_interpreter_is_one_line_and_exit_2(results_root):
    args, expected = BAD_INPUT[3]
    result = pacer("run", f"results_root={results_root}", *args)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, expected)
    assert not results_root.exists() or not any(results_root.rglob("run.json"))


def test_a_normalized_workload_without_its_reference_names_the_config_file(results_root, capsys):
    assert main(["run", f"results_root={results_root}", "~workload.reference"]) == 2
    assert_one_error_line(capsys.readouterr().err, f"run `pacer calibrate` (config: {CONFIG_DIR / 'workload' / 'mnist1d_mlp.yaml'})")


def test_unknown_verb_lists_verbs():
    result = pacer("rnu")
    assert result.returncode == 2 and "unknown verb 'rnu' (valid: run" in result.stderr


def test_existing_run_folder_is_refused_without_prompt(results_root, capsys):
    args = ["run", f"results_root={results_root}", *TINY_RUN]
    assert main(args) == 0
    again = pacer(*args)  # stdin stays open: a prompt would hang here until the timeout
    assert again.returncode == 2
    assert "already holds a run: pass resume=true or overwrite=true" in again.stderr
    run_dir = next(results_root.rglob("run.json")).parent
    (run_dir / "notes.txt").write_text("mine")
    with open(run_dir / "evals.jsonl", "a") as f:
        f.write('{"old": true}\n')
    assert main([*args, "overwrite=true"]) == 0
    assert (run_dir / "notes.txt").read_text() == "mine"  # overwrite replaces Pacer's records, not the folder
    assert "old" not in (run_dir / "evals.jsonl").read_text()


def test_resume_of_a_finished_run_does_nothing(results_root, capsys):
    args = ["run", f"results_root={results_root}", *TINY_RUN]
    assert main(args) == 0
    first = capsys.readouterr().out
    record = next(results_root.rglob("run.json")).read_text()
    again = pacer(*args, "resume=true")
    assert again.returncode == 0 and "ended step_cap" in again.stdout and first == again.stdout
    assert next(results_root.rglob("run.json")).read_text() == record


ESCAPING_NAMES = ["experiment=../../x", "experiment={tmp}/abs/path", "experiment=.", "experiment=", "submission.name=../../..", "workload.name=a/../../.."]
TINY_SWEEP = ["workload=[mnist1d_mlp]", "ruleset.num_trials=1", "ruleset.num_studies=1", *(a for a in TINY_RUN if a != "--quiet")]


@pytest.mark.parametrize("verb", ["run", "sweep"])
@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_a_name_that_is_not_one_folder_is_refused_before_anything_is_written(verb, name, tmp_path, capsys):
    """Joined to the results root, each would name a folder outside it or at another level of
    it: records and sweep.json written there, or deleted there with overwrite=true."""
    results_root = tmp_path / "a" / "b" / "results"
    key, _, value = name.format(tmp=tmp_path).partition("=")
    assert main([verb, f"results_root={results_root}", f"{key}={value}", "overwrite=true", *(TINY_RUN if verb == "run" else TINY_SWEEP)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"{key}={value!r} must be one folder name (not empty, . or .., without /, \\ or NUL)")
    assert not any(tmp_path.iterdir())  # nothing outside the results root, nor in it


@pytest.mark.parametrize("verb", ["run", "sweep"])
def test_a_study_folder_linked_outside_the_results_root_is_refused(verb, results_root, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    (outside / "trial_0").mkdir(parents=True)
    for name in ("run.json", "evals.jsonl", "notes.txt"):
        (outside / "trial_0" / name).write_text("theirs")
    workload_dir = results_root / "default" / "external" / "nadamw" / "mnist1d_mlp"
    workload_dir.mkdir(parents=True)
    (workload_dir / "study_0").symlink_to(outside)
    assert main([verb, f"results_root={results_root}", "overwrite=true", *(TINY_RUN if verb == "run" else TINY_SWEEP)]) == 2
    assert_one_error_line(capsys.readouterr().err, f"resolves to {outside.resolve() / 'trial_0'}, outside the results root {results_root.resolve()} (through a symbolic link)")
    assert {p.name: p.read_text() for p in (outside / "trial_0").iterdir()} == dict.fromkeys(("run.json", "evals.jsonl", "notes.txt"), "theirs")
    assert sorted(p.name for p in (results_root / "default").iterdir()) == ["external"]  # no sweep.json or lock either


def test_unwritable_results_root(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", f"results_root={blocker}"]) == 2
    assert "cannot write the results root" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["overwrite=true"]])
def test_a_multirun_whose_jobs_share_a_run_folder_is_refused_before_any_job(tmp_path, capsys, extra):
    """`seed=0,1` names no folder: the second job would refuse it after the first trained, or,
    with overwrite=true, delete the first job's record."""
    assert main(["run", "-m", "seed=0,1", "hparams.learning_rate=0.001,0.002", f"results_root={tmp_path}", *extra, *TINY_RUN]) == 2
    assert_one_error_line(capsys.readouterr().err, "pacer run -m: 4 jobs would share the run folder "
                          f"{tmp_path}/default/external/nadamw/mnist1d_mlp/study_0/trial_0 (they differ in hparams.learning_rate, seed, which the folder does not name): "
                          "name it, e.g. experiment='default_${hparams.learning_rate}', or use pacer sweep")
    assert not tmp_path.joinpath("default").exists()


def test_a_multirun_whose_folders_name_each_job_runs_them_all(tmp_path, capsys):
    assert main(["run", "-m", "seed=0,1", "experiment=seed_${seed}", f"results_root={tmp_path}", *TINY_RUN]) == 0
    assert sorted(p.parts[-7] for p in tmp_path.rglob("run.json")) == ["seed_0", "seed_1"]


@pytest.mark.parametrize("verb", ["run", "sweep", "status", "calibrate"])
def test_help_of_an_override_verb_is_the_usage(verb, capsys):
    assert main([verb, "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: pacer VERB [key=value ...]")
