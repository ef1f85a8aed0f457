"""Rulesets, grid expansion, the manifest, idempotent re-runs and refusals (inline launcher)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.cli import main
from harness.experiments import launchers
from harness.experiments.job import prepare_job
from harness.experiments.manifest import wait_until_settled
from harness.experiments.run_config import compose
from harness.experiments.sweep import MANIFEST, expand_grid, experiment_lock, launch_order
from harness.plugins.search import trial_point
from harness.plugins.submissions import load_submission

TINY = ["workload=[mnist1d_mlp]", "max_steps=3", "eval_every_steps=2", "workload.num_samples=600", "workload.hidden=16", "max_runtime_sec=600"]


def test_self_ruleset_multiplies_the_budget_and_names_the_record_path(tmp_path):
    job = prepare_job(compose([f"results_root={tmp_path}", "ruleset=self"]))
    assert job.settings.max_runtime_sec == pytest.approx(1.5 * job.workload.max_allowed_runtime_sec)
    assert "/self/nadamw/" in str(job.run_dir.path)
    external = prepare_job(compose([f"results_root={tmp_path}", "experiment=e"]))
    assert external.settings.max_runtime_sec == external.workload.max_allowed_runtime_sec and "/external/" in str(external.run_dir.path)


def test_external_grid_points_are_sharding_safe_and_seeds_distinct():
    cells = expand_grid(["ruleset.num_trials=3", "ruleset.num_studies=2", "seed=7"], ["nadamw", "adamw"], ["mnist1d_mlp", "mnist1d_mlp_gelu"])
    assert len(cells) == 2 * 2 * 2 * 3 and len({c.key for c in cells}) == len(cells)
    space = load_submission(compose(["submission=adamw"]).submission).search_space
    for cell in cells:
        if cell.key.startswith("adamw/"):
            assert cell.cfg["hparams"] == trial_point(space, 7, cell.cfg["study"], cell.cfg["trial"])
    study0 = [c.cfg["hparams"] for c in cells if c.key.startswith("adamw/mnist1d_mlp/study_0")]
    study1 = [c.cfg["hparams"] for c in cells if c.key.startswith("adamw/mnist1d_mlp/study_1")]
    assert study0 != study1
    seeds = {(c.cfg["workload"]["name"], c.cfg["variant"], c.cfg["study"], c.cfg["trial"]): c.cfg["seed"] for c in cells}
    assert len(set(seeds.values())) == len(seeds)  # per (workload, study, trial), shared by submissions
    again = expand_grid(["ruleset.num_trials=3", "ruleset.num_studies=2", "seed=7"], ["nadamw", "adamw"], ["mnist1d_mlp", "mnist1d_mlp_gelu"])
    assert [c.hash for c in again] == [c.hash for c in cells]


def test_cells_start_interleaved_across_submissions_so_that_a_stretch_of_load_hits_all_alike():
    cells = expand_grid(["ruleset.num_trials=2", "ruleset.num_studies=2"], ["nadamw", "adamw"], ["mnist1d_mlp", "mnist1d_mlp_gelu"])
    assert [c.key for c in cells[:2]] == ["nadamw/mnist1d_mlp/study_0/trial_0", "nadamw/mnist1d_mlp/study_0/trial_1"]  # grid order
    order = [c.key for c in launch_order(cells)]
    assert sorted(order) == sorted(c.key for c in cells)
    assert order[:5] == ["nadamw/mnist1d_mlp/study_0/trial_0", "adamw/mnist1d_mlp/study_0/trial_0",
                         "nadamw/mnist1d_mlp_gelu/study_0/trial_0", "adamw/mnist1d_mlp_gelu/study_0/trial_0",
                         "nadamw/mnist1d_mlp/study_0/trial_1"]
    assert order[-1] == "adamw/mnist1d_mlp_gelu/study_1/trial_1"


def test_self_and_concrete_points_rulesets():
    self_cells = expand_grid(["ruleset=self"], ["nadamw"], ["mnist1d_mlp"])
    assert len(self_cells) == 3 and all(c.cfg["hparams"] == {} for c in self_cells)  # the submission's default point
    points = expand_grid(["+ruleset.points=[{learning_rate:0.001},{learning_rate:0.002}]", "ruleset.num_studies=1"], ["adamw"], ["mnist1d_mlp"])
    assert [c.cfg["hparams"] for c in points] == [{"learning_rate": 0.001}, {"learning_rate": 0.002}]


def _sweep(tmp_path, *extra):
    return main(["sweep", f"results_root={tmp_path}", "experiment=demo", "ruleset.num_trials=2", "ruleset.num_studies=1", *TINY, *extra])


def test_inline_sweep_is_idempotent_and_refuses_a_changed_config(tmp_path, capsys):
    assert _sweep(tmp_path) == 0
    manifest = json.loads((tmp_path / "demo" / MANIFEST).read_text())
    assert len(manifest["jobs"]) == 2 and all(e["attempts"] == 1 and e["hash"] for e in manifest["jobs"].values())
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("run.json")]
    assert sorted(r["trial"] for r in records) == [0, 1] and {r["status"] for r in records} == {"step_cap"}
    capsys.readouterr()

    assert _sweep(tmp_path) == 0
    assert "launching 0" in capsys.readouterr().out
    assert main(["status", f"results_root={tmp_path}", "experiment=demo"]) == 0
    table = capsys.readouterr().out
    assert "2 done, 0 running, 0 pending, 0 failed" in table and "nadamw" in table

    assert _sweep(tmp_path, "max_steps=4") == 2
    assert "different config (changed: max_steps 3 -> 4)" in capsys.readouterr().err
    # another submission's cells, under the other ruleset: not the same cells, and still refused
    assert _sweep(tmp_path, "ruleset=self", "ruleset.num_trials=1", "submission=[adamw]") == 2
    assert capsys.readouterr().err.strip() == ("pacer: error: experiment demo holds external runs and adamw/mnist1d_mlp/study_0/trial_0 is a self cell: "
                                               "one experiment holds one ruleset; use a new experiment name")
    assert not (tmp_path / "demo" / "self").exists()


def test_a_record_the_sweep_did_not_write_is_refused_not_adopted(tmp_path, capsys):
    """A hand run of trial 1 (the default point, seed 0) where the sweep's trial 1 (another
    point, another seed) goes: named, never counted as done; the sweep's own records are
    recognized by their config hash even with the manifest lost."""
    hand = ["run", f"results_root={tmp_path}", "experiment=demo", "trial=1", *(o for o in TINY if not o.startswith("workload=")), "--quiet"]
    assert main(hand) == 0
    capsys.readouterr()
    assert _sweep(tmp_path, "ruleset=external") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pacer: error: {tmp_path}/demo/external/nadamw/mnist1d_mlp/study_0/trial_1: a run record this sweep did not write "
                                               "sits where cell nadamw/mnist1d_mlp/study_0/trial_1 goes (record -> cell: changed: seed 0 -> "), err
    assert "seed 0 -> " in err[0] and not (tmp_path / "demo" / MANIFEST).exists()

    (tmp_path / "demo" / "external" / "nadamw" / "mnist1d_mlp" / "study_0" / "trial_1").rename(tmp_path / "aside")
    assert _sweep(tmp_path, "ruleset=external") == 0
    (tmp_path / "demo" / MANIFEST).unlink()
    capsys.readouterr()
    assert _sweep(tmp_path, "ruleset=external") == 0
    assert "launching 0" in capsys.readouterr().out


def test_second_sweep_of_a_locked_experiment_refuses(tmp_path, capsys):
    with experiment_lock(tmp_path / "demo"):
        assert _sweep(tmp_path) == 2
    assert "another pacer sweep of experiment demo is running" in capsys.readouterr().err
    assert not list(tmp_path.rglob("run.json"))


def test_unwritable_results_root_is_one_clear_line(capsys):
    assert main(["sweep", "results_root=/proc/pacer-results", "experiment=demo", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pacer: error: cannot write the results root /proc/pacer-results") and "\n" not in err


@pytest.fixture
def full_disk(tmp_path):
    """A 16 KiB tmpfs: too small for a 300-cell manifest (needs root; skips elsewhere)."""
    root = tmp_path / "full"
    root.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(root)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tiny tmpfs (a full disk) needs root")
    yield root
    subprocess.run(["umount", str(root)], check=False)


def test_full_results_disk_is_one_clear_line(full_disk, capsys):
    assert main(["sweep", f"results_root={full_disk}", "experiment=demo", "ruleset.num_trials=100", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"pacer: error: cannot write the results root {full_disk}: No space left on device ({full_disk}/demo/sweep.json)"


def test_a_local_job_past_its_time_limit_checkpoints_and_stops(tmp_path):
    overrides = [f"results_root={tmp_path}", "workload=mnist1d_mlp", "workload.num_samples=600", "workload.hidden=16", "max_runtime_sec=600",
                 "max_steps=1000000", "eval_every_steps=100", "quiet=true"]
    job = launchers.LocalJob.start(OmegaConf.to_container(compose(overrides), resolve=True), tmp_path, limit_sec=3.0, dry=False)
    while not job.done():
        time.sleep(0.2)
    (run,) = tmp_path.rglob("run.json")
    record = json.loads(run.read_text())
    assert job.terminated and job.process.exitcode == 0 and record["status"] == "preempted" and record["final"]["global_step"] > 0
    assert (run.parent / "checkpoint.pt").exists()  # what the next sweep continues from
    assert (tmp_path / f"{job.pid}_0_log.out").read_text().strip() == f"job {job.pid}: preempted"


def test_status_of_an_unknown_experiment(tmp_path, capsys):
    assert main(["status", f"results_root={tmp_path}", "experiment=nope"]) == 2
    assert "no sweep manifest for experiment nope" in capsys.readouterr().err


def test_status_reads_no_log_outside_the_experiment(tmp_path, capsys):
    """A crafted manifest that names any file as a cell's log (an absolute path, `..`, a
    symlink out of the folder) gets no line of it printed; a log inside is still shown."""
    exp_dir = tmp_path / "crafted"
    (exp_dir / ".submitit").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET\n")
    (exp_dir / ".submitit" / "link.err").symlink_to(secret)
    (exp_dir / ".submitit" / "own.err").write_text("Traceback ...\nMemoryError: the cell's own log\n")
    logs = {"absolute": str(secret), "dotdot": str(exp_dir / ".." / "secret.txt"), "symlink": str(exp_dir / ".submitit" / "link.err"),
            "own": str(exp_dir / ".submitit" / "own.err")}
    jobs = {f"{name}/mnist1d_mlp/study_0/trial_0": {"hash": "h", "run_dir": f"crafted/{name}", "launcher": "local", "job_id": "gone", "attempts": 1, "log": log}
            for name, log in logs.items()}
    (exp_dir / MANIFEST).write_text(json.dumps({"schema": 1, "experiment": "crafted", "job_name": "pacer-crafted", "jobs": jobs}))

    assert main(["status", f"results_root={tmp_path}", "experiment=crafted"]) == 1  # every cell failed
    out = capsys.readouterr().out
    assert "SECRET" not in out and out.count("its log is outside the experiment's folder, not read") == 3
    assert "own on mnist1d_mlp study_0 trial_0 (attempt 1, job gone): the job ended without a run record: MemoryError: the cell's own log" in out


def test_local_launcher_runs_cells_as_forked_processes(tmp_path, capsys):
    assert _sweep(tmp_path, "ruleset.num_trials=1", "launcher=local") == 0
    entry = next(iter(json.loads((tmp_path / "demo" / MANIFEST).read_text())["jobs"].values()))
    assert entry["launcher"] == "local" and entry["job_id"].isdigit() and int(entry["job_id"]) != os.getpid()  # a process of its own
    assert Path(entry["log"]).exists() and Path(entry["log"]).with_suffix(".out").read_text().strip() == f"job {entry['job_id']}: step_cap"
    assert json.loads(next(tmp_path.rglob("run.json")).read_text())["status"] == "step_cap"
    assert main(["status", f"results_root={tmp_path}", "experiment=demo"]) == 0
    assert "1 done" in capsys.readouterr().out


@pytest.mark.parametrize(("manifest", "expected"), [
    ("{not json", "cannot read the sweep manifest"),
    ("[]", "not an object with a `jobs` object"),
    ('{"jobs": {"a": 1}}', "job a is not an object"),
    ('{"jobs": {"a": {"hash": "h", "run_dir": "x", "attempts": "1", "state": "done"}}}', "job a: attempts is '1'"),
    ('{"jobs": {"a": {"hash": "h", "run_dir": "x", "attempts": 1, "log": ["/etc/passwd"]}}}', "job a: log is ['/etc/passwd']"),
    ('{"jobs": {"a": {"hash": "h", "run_dir": "../../etc", "attempts": 1, "state": "done"}}}', "job a: run_dir '../../etc' leaves the results root"),
])
def test_a_damaged_or_foreign_manifest_is_one_line_for_status(tmp_path, capsys, manifest, expected):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "sweep.json").write_text(manifest)
    assert main(["status", f"results_root={tmp_path}", "experiment=exp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pacer: error: ") and str(tmp_path / "exp" / "sweep.json") in err and expected in err and "\n" not in err
    assert (tmp_path / "exp" / "sweep.json").read_text() == manifest


def test_a_damaged_run_record_in_a_sweep_cell_is_one_line_for_status(tmp_path, capsys):
    assert main(["sweep", f"results_root={tmp_path}", "experiment=exp", "ruleset.num_trials=1", "ruleset.num_studies=1", *TINY]) == 0
    (record,) = tmp_path.rglob("run.json")
    record.write_text('"a string"')
    capsys.readouterr()
    assert main(["status", f"results_root={tmp_path}", "experiment=exp"]) == 2
    assert capsys.readouterr().err.strip() == f"pacer: error: run record {record} is not a JSON object: move it aside"


def test_a_bad_cell_is_refused_before_any_cell_is_launched(tmp_path, capsys):
    args = ["workload=[mnist1d_mlp,mnist1d_mlp_gelu]", "ruleset.num_trials=1", "suite.overrides={mnist1d_mlp_gelu:{workload:{hidden:-1}}}"]
    assert _sweep(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pacer: error: cell nadamw/mnist1d_mlp_gelu/study_0/trial_0: workload mnist1d_mlp_gelu: hidden=-1 must be an integer >= 1") and "\n" not in err
    assert not tmp_path.exists() or not list(tmp_path.rglob("run.json")) and not list(tmp_path.rglob("sweep.json"))


def test_status_of_a_local_sweep_at_work_sees_its_running_cells_and_wait_follows_it(tmp_path, capsys):
    """A local sweep writes its job ids only once its jobs have run: until then a cell is running
    when its run holds the lock on its folder, and `--wait` follows while the sweep holds its own."""
    assert _sweep(tmp_path) == 0
    exp_dir = tmp_path / "demo"
    manifest = json.loads((exp_dir / MANIFEST).read_text())
    for entry in manifest["jobs"].values():
        entry.pop("job_id"), entry.pop("launcher")  # as the sweep left them before its jobs ran
    (exp_dir / MANIFEST).write_text(json.dumps(manifest))
    run_dir = tmp_path / next(iter(manifest["jobs"].values()))["run_dir"]
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(record | {"status": "running"}))
    capsys.readouterr()
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a live run holds
        main(["status", f"results_root={tmp_path}", "experiment=demo"])
        assert "1 done, 1 running, 0 pending, 0 failed" in capsys.readouterr().out
    finally:
        os.close(fd)
    main(["status", f"results_root={tmp_path}", "experiment=demo"])
    assert "1 done, 0 running, 1 pending, 0 failed" in capsys.readouterr().out  # no live run: not started

    following = wait_until_settled(exp_dir, tmp_path, poll_sec=0)
    with experiment_lock(exp_dir):
        next(following), next(following)  # the sweep is at work: --wait goes on
    with pytest.raises(StopIteration):
        next(following)
