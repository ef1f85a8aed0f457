"""Bad input, every verb: one clear line on stderr naming the culprit, exit code 2, and nothing
trained, written or deleted.

Each message is checked through `harness.cli.main` in this interpreter (a fresh one costs seconds
of imports); one case of each kind also runs as a user runs it, `python -m harness` in a fresh
interpreter, where nothing else (an import-time warning, a traceback) may reach stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, pacer

from harness.cli import main
from harness.core.store import config_hash
from harness.plugins.workloads import CONFIG_DIR

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
    (["workload.batch_size=abc"], "workload mnist1d_mlp: batch_size='abc' must be an integer >= 1"),
    (["workload.batch_size=0"], "workload mnist1d_mlp: batch_size=0 must be an integer >= 1"),
    (["workload.eval_batch_size=0"], "workload mnist1d_mlp: eval_batch_size=0 must be an integer >= 1"),
    (["workload.max_runtime_sec=-1"], "workload mnist1d_mlp: max_runtime_sec=-1 must be a positive finite number of seconds"),
    (["workload.max_runtime_sec=nan"], "workload mnist1d_mlp: max_runtime_sec=nan must be a positive finite number of seconds"),
    (["workload.validation_target=nan"], "workload mnist1d_mlp: validation_target=nan must be a finite number"),
    (["workload.step_hint=1.7"], "workload mnist1d_mlp: step_hint=1.7 must be an integer >= 1"),
    (["workload.hidden=-1"], "workload mnist1d_mlp: hidden=-1 must be an integer >= 1"),
    (["workload.depth=abc"], "workload mnist1d_mlp: depth='abc' must be an integer >= 1"),
    (["workload=markov_lm", "workload.heads=0"], "workload markov_lm: heads=0 must be an integer >= 1"),
    (["~experiment"], "~experiment removes a key every run reads: set it instead (experiment=VALUE)"),
    (["~workload"], "~workload removes a key every run reads: set it instead (workload=VALUE)"),
    (["study=abc"], "study='abc' must be an integer >= 0"),
    (["study=1.7"], "study=1.7 must be an integer >= 0"),
    (["trial=-1"], "trial=-1 must be an integer >= 0"),
    (["max_runtime_sec=nan"], "max_runtime_sec=nan must be a positive finite number of seconds"),
    (["ruleset.budget_multiplier=-1"], "ruleset.budget_multiplier=-1 must be a positive finite number"),
    (["hparams.label_smoothing=false"], "label_smoothing=False is outside its search space {0.0, 0.1}"),
    (["overwrite=no"], "overwrite='no' must be true or false"),
    (["resume=maybe"], "resume='maybe' must be true or false"),
    (["resume=true", "overwrite=true"], "resume=true and overwrite=true contradict each other"),
    (["results_root="], "results_root='' names no folder: give one (the default is results)"),
    (["hparams=abc"], "hparams='abc' must be a mapping of hyperparameters: set one with hparams.NAME=VALUE"),
    (["+max_step=5"], "+max_step adds a key no run reads (a typo?)"),
    (["seed=99999999999999999999"], "seed=99999999999999999999 must be below 2**63"),
    (["ruleset=self", "hparams.learning_rate=0.01"], "hparams.learning_rate: under the self-tuning ruleset a submission runs its own default point"),
    (["submission.hyperparameters.beta2=betas[5]"], "cannot read the argument 'submission.hyperparameters.beta2=betas[5]': mismatched input '['"),
    (["results_root=/tmp/résultats"], "Hydra's override grammar reads only ASCII unquoted; quote the value: \"results_root='/tmp/résultats'\""),
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
    assert main([verb, f"results_root={results_root}", f"{key}={value}", *(["overwrite=true", *TINY_RUN] if verb == "run" else TINY_SWEEP)]) == 2
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
    assert main([verb, f"results_root={results_root}", *(["overwrite=true", *TINY_RUN] if verb == "run" else TINY_SWEEP)]) == 2
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


OPTION_VERB_BAD_INPUT = [
    (["score", "--bogus"], "pacer score: unknown option --bogus (see pacer score --help)"),
    (["score"], "pacer score: the following arguments are required: roots"),
    (["score", "ROOT", "--format", "xml"], "pacer score: argument --format: invalid choice: 'xml'"),
    (["score", "ROOT", "--bootstrap", "abc"], "pacer score: argument --bootstrap: invalid int value: 'abc'"),
    (["report", "ROOT"], "pacer report: the following arguments are required: --out"),
    (["compare", "ROOT", "x"], "pacer compare: the following arguments are required: Y"),
    (["compare", "ROOT", "x", "y", "--format", "csv"], "pacer compare: argument --format: invalid choice: 'csv'"),
    (["compare", "ROOT", "x", "x"], "compare x with another submission, not with itself"),
    (["report", "ROOT", "--out"], "pacer report: argument --out: expected one argument"),
    (["import-algoperf", "ROOT", "--out", "ROOT/x", "--nope=1"], "pacer import-algoperf: unknown option --nope=1"),
    (["data"], "usage: pacer data convert WORKLOAD SOURCE DEST (see pacer data convert --help)"),
    (["data", "convert", "criteo1tb"], "pacer data convert: the following arguments are required: source, dest"),
    (["data", "convert", "imagenet_resnet50", "ROOT/raw", "ROOT/out"], "no data converter for workload 'imagenet_resnet50' (valid: criteo1tb, finewebedu_lm, librispeech)"),
    (["data", "convert", "criteo1tb", "ROOT/raw", "ROOT/out", "--jobs=2"], "pacer data convert: unknown option --jobs=2"),
]


@pytest.mark.parametrize(("args", "expected"), OPTION_VERB_BAD_INPUT)
def test_bad_options_of_the_option_verbs_are_one_line(args, expected, tmp_path, capsys):
    assert main([a.replace("ROOT", str(tmp_path)) for a in args]) == 2
    assert_one_error_line(capsys.readouterr().err, expected)
    assert list(tmp_path.iterdir()) == []


def test_a_batch_size_override_is_the_batch_size_the_run_trains_with(results_root, capsys):
    """Pacer's submissions answer `get_batch_size` with the running workload's own `batch_size`,
    overrides included (not the YAML on disk)."""
    assert main(["run", f"results_root={results_root}", *TINY_RUN, "max_steps=1", "workload.batch_size=48"]) == 0
    (record,) = results_root.rglob("run.json")
    assert json.loads(record.read_text())["batch_size"] == 48 and json.loads(record.read_text())["final"]["examples_seen"] == 48


@pytest.mark.parametrize(("verb", "expected"), [
    (["score", "ROOT", "--out", "OUT/scores"], "cannot write score tables to OUT/scores: OUT is not writable (read-only file system)"),
    (["report", "ROOT", "--out", "OUT"], "cannot write the report to OUT: OUT is not writable (read-only file system)"),
    (["import-algoperf", "ALGOPERF", "--out", "OUT/imported"], "cannot write imported run records to OUT/imported: OUT is not writable (read-only file system)"),
])
def test_an_unwritable_output_folder_is_one_line_before_the_work(verb, expected, tmp_path, read_only_folder, capsys):
    from scoring_fixtures import write_table

    write_table(tmp_path / "root", {"adamw": {"w1": [[10.0]]}})
    algoperf = tmp_path / "algoperf" / "exp" / "study_0" / "mnist_jax" / "trial_1"  # one experiment is all the check before it needs
    algoperf.mkdir(parents=True)
    (algoperf / "eval_measurements.csv").write_text("global_step,accumulated_submission_time,validation/accuracy\n1,1.0,0.5\n")
    args = [a.replace("ALGOPERF", str(tmp_path / "algoperf")).replace("ROOT", str(tmp_path / "root")).replace("OUT", str(read_only_folder)) for a in verb]
    assert main(args) == 2
    expected = expected.replace("OUT", str(read_only_folder))
    if os.geteuid() != 0:  # mode 0555: refused by permission, not by the file system
        expected = expected.replace("read-only file system", "permission denied")
    assert_one_error_line(capsys.readouterr().err, expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("def update_params(:\n", "module pacer_test_broken is not valid Python: invalid syntax (FILE, line 1)"),
    ("import math\nraise RuntimeError('no GPU here')\n", "importing module pacer_test_broken raised RuntimeError: no GPU here (FILE, line 2)"),
])
def test_a_submission_module_that_fails_at_import_is_one_line_naming_file_and_line(source, expected, tmp_path, results_root, monkeypatch, capsys):
    (tmp_path / "pacer_test_broken.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", f"results_root={results_root}", *TINY_RUN, "submission.module=pacer_test_broken"]) == 2
    assert_one_error_line(capsys.readouterr().err, expected.replace("FILE", str(tmp_path / "pacer_test_broken.py")))
    assert not results_root.exists() or not any(results_root.rglob("run.json"))


@pytest.mark.parametrize(("args", "expected"), [
    (["ruleset=self", "hparams.dropout_rate=0.1"], "hparams.dropout_rate: under the self-tuning ruleset"),
    (["ruleset.num_trials=0"], "ruleset.num_trials=0 must be an integer >= 1"),
    (["ruleset.num_studies=two"], "ruleset.num_studies='two' must be an integer >= 1"),
])
def test_bad_sweep_grid_sizes_are_one_line(args, expected, results_root, capsys):
    assert main(["sweep", f"results_root={results_root}", "workload=[mnist1d_mlp]", *args]) == 2
    assert_one_error_line(capsys.readouterr().err, expected)
    assert not results_root.exists()


def test_overwrite_no_never_deletes_the_run(results_root, capsys):
    assert main(["run", f"results_root={results_root}", *TINY_RUN]) == 0
    (record,) = results_root.rglob("run.json")
    before = record.read_bytes()
    assert main(["run", f"results_root={results_root}", *TINY_RUN, "overwrite=no"]) == 2
    assert record.read_bytes() == before


def test_a_multirun_with_one_bad_job_trains_none(results_root, capsys):
    assert main(["run", "-m", "trial=0,1", "seed=0,-1", f"results_root={results_root}", *TINY_RUN]) == 2
    assert_one_error_line(capsys.readouterr().err, "pacer run -m: job 1 (trial=0 seed=-1")
    assert not results_root.exists()


def test_a_warning_is_one_line_without_pythons_source_line(tmp_path):
    from scoring_fixtures import write_table

    write_table(tmp_path / "root", {"adamw": {"w1": [[10.0]]}, "nadamw": {"w1": [[8.0]]}})
    record = next((tmp_path / "root").rglob("run.json"))
    record.write_text(record.read_text().replace('"study": 0', '"study": "x"'))
    result = pacer("report", str(tmp_path / "root"), "--out", str(tmp_path / "out"))  # as a user runs it: pytest would catch the warning
    assert result.returncode == 0, result.stderr
    err = result.stderr.strip().splitlines()
    assert err == [f"pacer: warning: skipping run record {record}: study is 'x', not a whole number >= 0"]


TRAINING_MODULES = ("torch", "hydra", "submitit", "harness.experiments.job", "harness.experiments.launchers", "harness.core.checkpoint", "harness.core.runner")
"""What a verb that only reads records must not import: torch alone costs seconds."""
READING_VERBS = [
    (["--help"], 0),
    (["status", "experiment=exp", "results_root=ROOT"], 1),  # one cell failed: its line is in the table
    (["status", "experiment=exp", "results_root=ROOT", "--wait"], 1),
    (["score", "ROOT"], 0),
    (["compare", "ROOT", "adamw", "nadamw"], 2),  # only adamw has runs: refused once the records are read
    (["report", "ROOT", "--out", "ROOT/report"], 0),
    (["import-algoperf", "--help"], 0),
]


def _swept_records(root: Path) -> None:
    """Under `root`: experiment `exp`'s records and a manifest of two cells, one done (its record
    is this sweep's) and one whose local job ended without a record."""
    from scoring_fixtures import write_run

    done = write_run(root, "adamw", "w1", 0, 0, reach_at=10.0)
    jobs = {"adamw/w1/study_0/trial_0": {"hash": config_hash({}), "run_dir": str(done.path.relative_to(root)), "launcher": "local", "job_id": "ended", "attempts": 1},
            "adamw/w1/study_0/trial_1": {"hash": "h", "run_dir": "exp/external/adamw/w1/study_0/trial_1", "launcher": "local", "job_id": "lost", "attempts": 1}}
    (root / "exp" / "sweep.json").write_text(json.dumps({"schema": 1, "experiment": "exp", "job_name": "pacer-exp", "jobs": jobs}))


def _imported_modules(importtime_stderr: str) -> set[str]:
    """The modules named by `python -X importtime`'s lines on stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(("args", "exit_code"), READING_VERBS, ids=[" ".join(a[:2]) + (" --wait" if "--wait" in a else "") for a, _ in READING_VERBS])
def test_verbs_that_only_read_records_import_no_torch(args, exit_code, tmp_path):
    _swept_records(tmp_path)
    command = [sys.executable, "-X", "importtime", "-m", "harness", *(a.replace("ROOT", str(tmp_path)) for a in args)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)  # as a user runs it: this interpreter has torch already
    assert result.returncode == exit_code, result.stderr[-2000:]
    training = sorted(m for m in _imported_modules(result.stderr) if any(m == t or m.startswith(f"{t}.") for t in TRAINING_MODULES))
    assert training == []


VERB_BAD_INPUT = [
    (["sweep", "launcher=local", "launcher.timeout_margin=0.5"], "launcher.timeout_margin=0.5 must be a finite number >= 1"),
    (["sweep", "launcher=local", "launcher.workers=0"], "launcher.workers=0 must be an integer >= 1"),
    (["sweep", "launcher.max_attempts=abc"], "launcher.max_attempts='abc' must be an integer >= 1"),
    (["sweep", "submission=[nadamw,nope]"], "unknown submission 'nope' (valid: "),
    (["sweep", "workload=[nope]"], "unknown workload 'nope' (valid: "),
    (["sweep", "submission=[nadamw,nadamw]"], "submission=[nadamw,nadamw]: nadamw listed twice (its cells would share run folders)"),
    (["sweep", "suite.overrides={mnist1d_mlp:{results_root:/tmp/elsewhere}}"], "suite.overrides.mnist1d_mlp.results_root: a sweep's cells share it; per workload only workload,"),
    (["sweep", "suite.overrides={nope:{devices:2}}"], "suite.overrides.nope: unknown workload 'nope' (valid: "),
    (["sweep", "resume=maybe"], "resume='maybe': pacer sweep continues unfinished cells by itself and never overwrites a record; resume is pacer run's"),
    (["sweep", "overwrite=true"], "overwrite=True: pacer sweep continues unfinished cells by itself"),
    (["status"], "usage: pacer status experiment=NAME [results_root=DIR] [--wait] (got no experiment)"),
    (["status", "experiment=e", "nope=1"], "usage: pacer status experiment=NAME [results_root=DIR] [--wait] (got nope=1)"),
    (["status", "experiment=e", "--wait=3"], "usage: pacer status experiment=NAME [results_root=DIR] [--wait] (got --wait=3)"),
    (["status", "experiment=nope"], "no sweep manifest for experiment nope under ROOT"),
    (["status", "experiment=../x"], "experiment='../x' must be one folder name"),
    (["calibrate", "workload=mnist1d_mlp", "trials=0"], "trials='0' must be an integer >= 1"),
    (["calibrate", "workload=mnist1d_mlp", "seed=abc"], "seed='abc' must be an integer >= 0"),
    (["calibrate", "workload=mnist1d_mlp", "algorithms=nope"], "algorithms: unknown submission(s) nope"),
    (["calibrate", "workload=mnist1d_mlp", "write=maybe"], "write='maybe' must be true or false"),
    (["calibrate", "workload=mnist1d_mlp", "hparams.learning_rate=0.01"], "hparams.learning_rate: calibrate tunes every algorithm over its own search space"),
    (["score", "ROOT"], "no run records (run.json) under ROOT"),
    (["compare", "ROOT", "adamw", "nadamw"], "no run records (run.json) under ROOT"),
    (["score", "ROOT", "--out", ""], "pacer score: argument --out: an empty path names no folder"),
    (["report", "ROOT", "--out", ""], "pacer report: argument --out: an empty path names no folder"),
    (["report", "ROOT", "--out", "ROOT/report"], "no run records (run.json) under ROOT"),
    (["import-algoperf", "ROOT", "--out", "ROOT/imported"], "no AlgoPerf experiment under ROOT"),
    (["import-algoperf", "ROOT", "--out", "ROOT/imported", "--targets", "v9"], "unknown AlgoPerf targets 'v9' (valid: v0.5, v0.6, v1.0)"),
]


def _tree(root) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "expected"), VERB_BAD_INPUT)
def test_bad_input_of_every_verb_is_one_line_and_changes_nothing(args, expected, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("a file of the user's\n")
    before = _tree(tmp_path)
    verb, *rest = args
    places = [] if verb in ("score", "compare", "report", "import-algoperf") else [f"results_root={root}"]
    assert main([verb, *places, *(a.replace("ROOT", str(root)) for a in rest)]) == 2
    assert_one_error_line(capsys.readouterr().err, expected.replace("ROOT", str(root)))
    assert _tree(tmp_path) == before


def test_a_reader_that_leaves_early_ends_pacer_quietly():
    """`pacer ... | head -1`: the reader closes the pipe before pacer writes; no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as closed_pipe:
        result = subprocess.run([sys.executable, "-m", "harness", "--help"], cwd=REPO, stdout=closed_pipe, stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 141 and result.stderr == ""
