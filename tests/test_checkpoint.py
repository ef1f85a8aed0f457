"""Preemption: a run stopped at a step boundary and resumed from its checkpoint gives, on CPU
in deterministic mode, the same (step, metrics) eval sequence as an uninterrupted run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.core import checkpoint
from harness.core.errors import PacerUserError, StorageError
from harness.core.runner import Runner
from harness.experiments.job import prepare_job, run_job
from harness.experiments.run_config import compose
from harness.plugins.submissions import submission_names

REPO = Path(__file__).resolve().parents[1]
TINY = ["workload.num_samples=1000", "workload.hidden=32", "eval_every_steps=4", "max_steps=24", "max_runtime_sec=600", "quiet=true", "+hparams.dropout_rate=0.1"]


def _comparable(evals: list[dict[str, object]]) -> list[dict[str, object]]:
    """Step, examples and metrics of each eval: everything but the clock readings."""
    return [{k: v for k, v in row.items() if not k.startswith("accumulated_") and k != "total_duration"} for row in evals]


def _runner(tmp_path: Path, experiment: str, overrides: list[str] = TINY, **kwargs) -> Runner:
    job = prepare_job(compose([f"results_root={tmp_path}", f"experiment={experiment}", *overrides]))
    return Runner(job.workload, job.submission.impl, job.hyperparameters, job.settings, **kwargs)


def test_runner_resumed_from_a_checkpoint_repeats_the_uninterrupted_evals(tmp_path):
    reference = _runner(tmp_path, "reference").run()
    assert reference.status == "step_cap" and len(reference.evals) == 7  # steps 1, 4, ..., 24

    first = _runner(tmp_path, "preempted")
    first.should_stop = lambda: first.outcome.global_step == 10
    assert first.run().status == "preempted"
    checkpoint.save(first, tmp_path, preemptions=1)
    saved = checkpoint.load(tmp_path)
    assert saved["outcome"]["global_step"] == 10 and saved["preemptions"] == 1
    resumed = _runner(tmp_path, "preempted", resume_from=saved).run()

    assert resumed.status == "step_cap"
    assert _comparable(resumed.evals) == _comparable(reference.evals)
    assert resumed.examples_seen == reference.examples_seen
    clock_after = [row["accumulated_raw_submission_time"] for row in resumed.evals]  # the totals are raw seconds
    assert clock_after == sorted(clock_after) and clock_after[3] >= saved["clock"]["totals"]["submission"]  # step 12: the clock continued from step 10


@pytest.mark.parametrize("submission", submission_names())
def test_every_submission_resumes_from_a_checkpoint_read_without_unpickling_code(tmp_path, submission):
    """Torch and pytorch_optimizer optimizers (Shampoo's preconditioner objects through its
    checkpoint_classes), LR schedulers and schedule-free's recent batches (digits_cnn has
    BatchNorm) survive a `weights_only` checkpoint taken after Shampoo started preconditioning."""
    overrides = [f"submission={submission}", "workload=digits_cnn", "workload.channels=8", "eval_every_steps=8", "max_steps=40", "max_runtime_sec=600", "quiet=true"]
    reference = _runner(tmp_path, "reference", overrides).run()
    first = _runner(tmp_path, "preempted", overrides)
    first.should_stop = lambda: first.outcome.global_step == 30
    assert first.run().status == "preempted"
    checkpoint.save(first, tmp_path, preemptions=1)
    classes = prepare_job(compose([f"results_root={tmp_path}", "experiment=preempted", *overrides])).submission.checkpoint_classes
    resumed = _runner(tmp_path, "preempted", overrides, resume_from=checkpoint.load(tmp_path, classes)).run()
    assert resumed.status == reference.status == "step_cap", resumed.error
    assert _comparable(resumed.evals) == _comparable(reference.evals)


class _RunsCode:
    """Pickled as a call of os.system: what a hostile checkpoint.pt would hold."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


def _hostile(path: Path) -> None:
    torch.save({"version": checkpoint.FORMAT_VERSION, "params": _RunsCode(path.parent / "SENTINEL")}, path)


def _truncated(path: Path) -> None:
    torch.save({"version": checkpoint.FORMAT_VERSION, "params": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:500])


UNREADABLE_CHECKPOINTS = [
    (_hostile, "it names posix.system, which a checkpoint may not hold"),
    (_truncated, "the file is damaged or not a checkpoint"),
    (lambda path: path.write_bytes(b"garbage"), "the file is damaged or not a checkpoint"),
    (lambda path: torch.save([1, 2, 3], path), "it is not a Pacer checkpoint"),
]


@pytest.mark.parametrize(("write", "reason"), UNREADABLE_CHECKPOINTS)
def test_resume_from_an_unreadable_checkpoint_is_one_line_and_runs_nothing(tmp_path, capsys, write, reason):
    """A run folder may come from anyone: resume=true never unpickles code, and a checkpoint it
    cannot read stops the run before its record changes."""
    args = ["run", f"results_root={tmp_path}", "experiment=hostile", *TINY]
    assert main(args) == 0
    run_dir = tmp_path / "hostile/external/nadamw/mnist1d_mlp/study_0/trial_0"
    record = json.loads((run_dir / "run.json").read_text()) | {"status": "preempted"}
    (run_dir / "run.json").write_text(json.dumps(record))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    write(run_dir / checkpoint.CHECKPOINT_FILE)
    capsys.readouterr()

    assert main([*args, "resume=true"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pacer: error: cannot resume from {run_dir / checkpoint.CHECKPOINT_FILE}: "), lines
    assert reason in lines[0] and "delete it to start the run over with resume=true, or pass overwrite=true" in lines[0]
    assert not (run_dir / "SENTINEL").exists()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != checkpoint.CHECKPOINT_FILE} == before


def test_resume_without_checkpoint_restarts_and_drops_stale_evals(tmp_path):
    cfg = [f"results_root={tmp_path}", "experiment=restart", *TINY]
    run_job(compose(cfg))
    run_dir = next(tmp_path.rglob("run.json")).parent
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(record | {"status": "running"}))  # as if SIGKILLed
    again = run_job(compose([*cfg, "resume=true"]))
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert again["status"] == "step_cap" and again["restarts"] == 1 and again["preemptions"] == 0
    assert [e["global_step"] for e in evals] == [1, 4, 8, 12, 16, 20, 24]


def _pacer_run(tmp_path: Path, experiment: str, *extra: str) -> subprocess.Popen:
    args = [f"results_root={tmp_path}", f"experiment={experiment}", *TINY, "max_steps=200", "eval_every_steps=50", "--quiet", *extra]
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # the in-process reference runs on one thread
    return subprocess.Popen([sys.executable, "-m", "harness", "run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _evals(tmp_path: Path, experiment: str) -> list[dict[str, object]]:
    path = next((tmp_path / experiment).rglob("evals.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigusr2_checkpoints_and_resume_true_continues_the_same_run(tmp_path):
    reference = _pacer_run(tmp_path, "reference")
    preempted = _pacer_run(tmp_path, "preempted")
    run_dir = tmp_path / "preempted/external/nadamw/mnist1d_mlp/study_0/trial_0"
    deadline = time.monotonic() + 120
    while not (run_dir / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    preempted.send_signal(signal.SIGUSR2)  # caught from the moment run.json exists: stops at a step boundary
    _, err = preempted.communicate(timeout=120)
    assert preempted.returncode == 3, err
    stopped = json.loads((run_dir / "run.json").read_text())
    assert stopped["status"] == "preempted" and stopped["preemptions"] == 1
    assert (run_dir / checkpoint.CHECKPOINT_FILE).exists()

    resumed = _pacer_run(tmp_path, "preempted", "resume=true")
    assert resumed.wait(timeout=300) == 0 and reference.wait(timeout=300) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "step_cap" and record["preemptions"] == 1 and record["restarts"] == 1
    assert not (run_dir / checkpoint.CHECKPOINT_FILE).exists()
    assert _comparable(_evals(tmp_path, "preempted")) == _comparable(_evals(tmp_path, "reference"))


def test_periodic_checkpoints_are_untimed_and_replace_each_other(tmp_path, monkeypatch):
    writes = []
    real_save = checkpoint.save

    def slow_save(runner, run_dir, preemptions):
        time.sleep(0.05)  # a slow disk: none of it may reach the submission clock
        writes.append(runner.outcome.global_step)
        return real_save(runner, run_dir, preemptions)

    monkeypatch.setattr(checkpoint, "save", slow_save)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runner = _runner(tmp_path, "periodic", at_step_boundary=checkpoint.PeriodicCheckpoints(run_dir, 1e-9, preemptions=0))
    assert runner.run().status == "step_cap"
    assert writes == list(range(1, 24))  # every step boundary of the continuing run
    assert runner.clock.submission_time < 0.5 * 0.05 * len(writes)
    assert checkpoint.load(run_dir)["outcome"]["global_step"] == 23
    assert sorted(p.name for p in run_dir.iterdir()) == [checkpoint.CHECKPOINT_FILE]


def test_a_kill_while_writing_leaves_the_previous_checkpoint_usable(tmp_path, monkeypatch):
    runner = _runner(tmp_path, "atomic")
    runner.should_stop = lambda: runner.outcome.global_step == 4
    runner.run()
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    checkpoint.save(runner, tmp_path, preemptions=0)
    runner.outcome.global_step = 5

    def killed_before_the_rename(fd):
        raise KeyboardInterrupt  # the process dies with the new checkpoint written but not yet in place

    monkeypatch.setattr(os, "fsync", killed_before_the_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(runner, tmp_path, preemptions=0)
    assert any(p.name.startswith(".checkpoint.pt.tmp") for p in tmp_path.iterdir())
    assert checkpoint.load(tmp_path)["outcome"]["global_step"] == 4
    monkeypatch.undo()
    checkpoint.save(runner, tmp_path, preemptions=0)  # the next write clears the leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.CHECKPOINT_FILE]


@pytest.mark.parametrize("value", ["-1", "abc", "inf", "true"])
def test_bad_checkpoint_period_is_one_line_error(tmp_path, value):
    with pytest.raises(PacerUserError, match=r"^checkpoint_every_sec=.* must be a positive number of seconds, or 0/null"):
        prepare_job(compose([f"results_root={tmp_path}", f"checkpoint_every_sec={value}"]))


def test_checkpoint_period_zero_or_null_is_off(tmp_path):
    for value in ("0", "null"):
        assert prepare_job(compose([f"results_root={tmp_path}", f"checkpoint_every_sec={value}", "overwrite=true"])).checkpoint_every_sec is None
    assert prepare_job(compose([f"results_root={tmp_path}", "overwrite=true"])).checkpoint_every_sec == 600


def test_sigkill_resumes_from_the_last_periodic_checkpoint(tmp_path):
    """No signal to catch: the run continues from its last periodic checkpoint, keeps the evals
    up to it, redoes the rest and ends with the eval sequence of an uninterrupted run."""
    args = ("max_steps=600", "eval_every_steps=50", "checkpoint_every_sec=0.2")
    killed = _pacer_run(tmp_path, "killed", *args)
    try:
        run_job(compose([f"results_root={tmp_path}", "experiment=reference", *TINY, *args]))
        before, saved = _kill_after_a_checkpoint(killed, tmp_path / "killed/external/nadamw/mnist1d_mlp/study_0/trial_0")
    finally:
        killed.kill()
    run_dir = tmp_path / "killed/external/nadamw/mnist1d_mlp/study_0/trial_0"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    kept = len(saved["outcome"]["evals"])
    assert 1 <= kept < 13 and saved["outcome"]["global_step"] < 600

    resumed = _pacer_run(tmp_path, "killed", *args, "resume=true")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "step_cap" and (record["restarts"], record["preemptions"]) == (1, 0)
    after = _evals(tmp_path, "killed")
    assert after[:kept] == before[:kept]  # kept as recorded, clock readings included
    assert _comparable(after) == _comparable(_evals(tmp_path, "reference"))  # the rest redone once, none twice
    clock = [row["accumulated_raw_submission_time"] for row in after]  # the totals are raw seconds
    assert clock == sorted(clock) and clock[kept] >= saved["clock"]["totals"]["submission"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["evals.jsonl", "run.json"]


def _kill_after_a_checkpoint(process: subprocess.Popen, run_dir: Path) -> tuple[list[dict[str, object]], dict[str, object]]:
    """SIGKILL `process` once its run has a checkpoint and 3 evals; its evals and checkpoint then."""
    deadline = time.monotonic() + 600
    while not ((run_dir / checkpoint.CHECKPOINT_FILE).exists() and _eval_count(run_dir) >= 3):
        assert time.monotonic() < deadline and process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    return [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()], checkpoint.load(run_dir)


def _eval_count(run_dir: Path) -> int:
    path = run_dir / "evals.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_preempted_job_under_hydras_submitit_local_launcher_is_requeued_and_resumes(tmp_path):
    """hydra/launcher=submitit_local: SIGUSR2 to the job's task, which checkpoints and hands
    over to submitit; submitit restarts the task, which resumes its own run to the eval
    sequence of an uninterrupted one (tests/test_slurm.py does the same on Slurm)."""
    args = ["run", "-m", "trial=0", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
            f"results_root={tmp_path}", "experiment=lpre", "workload.num_samples=1000", "workload.hidden=32", "max_steps=300", "eval_every_steps=100",
            "max_runtime_sec=600", "checkpoint_every_sec=0"]
    multirun = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "lpre" / "external" / "nadamw" / "mnist1d_mlp" / "study_0" / "trial_0"
    deadline = time.monotonic() + 120
    while not (run_dir / "run.json").exists():  # the run catches USR2 from here on
        assert time.monotonic() < deadline and multirun.poll() is None, multirun.stderr.read() if multirun.poll() is not None else "no run.json"
        time.sleep(0.05)
    (controller,) = [p.name for p in (tmp_path / "lpre" / ".multirun" / ".submitit").iterdir() if p.name.isdigit()]
    task = int(Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0])
    os.kill(task, signal.SIGUSR2)
    out, err = multirun.communicate(timeout=300)
    assert multirun.returncode == 0, err[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    evals = [json.loads(line)["global_step"] for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert record["status"] == "step_cap" and record["preemptions"] == 1 and evals == [1, 100, 200, 300], (record["status"], evals, err[-2000:])


def test_a_full_disk_stops_the_run_in_one_line_and_resume_continues_it(small_disk, tmp_path):
    """The eval or checkpoint the disk refused is neither half-kept nor blamed on the submission:
    the record stays `running`, and once there is room resume=true ends with the eval sequence
    of an uninterrupted run."""
    args = ("max_steps=1500", "eval_every_steps=5", "checkpoint_every_sec=0.2")
    full = _pacer_run(small_disk, "full", *args)
    _, err = full.communicate(timeout=300)
    assert full.returncode == 1, err
    line = err.strip().splitlines()[-1]  # after the progress lines
    assert "Traceback" not in err and line.startswith(f"pacer: error: cannot write {small_disk}/full/") and "No space left on device" in line and "resume=true" in line
    run_dir = small_disk / "full/external/nadamw/mnist1d_mlp/study_0/trial_0"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    before = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]  # every line whole
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]

    kept = len(checkpoint.load(run_dir)["outcome"]["evals"])
    assert 1 <= kept <= len(before)

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    resumed = _pacer_run(small_disk, "full", *args, "resume=true")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    after = _evals(small_disk, "full")
    assert after[:kept] == before[:kept]  # kept as written, clock readings included
    reference = _pacer_run(tmp_path, "reference", *args)
    assert reference.wait(timeout=300) == 0
    assert _comparable(after) == _comparable(_evals(tmp_path, "reference"))


def test_a_checkpoint_the_full_disk_refuses_is_a_storage_error_and_leaves_the_previous_one(small_disk, tmp_path):
    """torch.save reports a failed write as a RuntimeError; the checkpoint must still say `disk full`."""
    runner = _runner(tmp_path, "fullckpt", [*TINY, "workload.hidden=256"])  # a checkpoint larger than torch's write chunks
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    runner.should_stop = lambda: runner.outcome.global_step == 4
    runner.run()
    checkpoint.save(runner, small_disk, preemptions=0)
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    os.truncate(filler, filler.stat().st_size - (small_disk / checkpoint.CHECKPOINT_FILE).stat().st_size // 2)  # room for half a checkpoint
    runner.outcome.global_step = 5
    with pytest.raises(StorageError, match=r"checkpoint\.pt: No space left on device; every eval"):
        checkpoint.save(runner, small_disk, preemptions=0)
    assert sorted(p.name for p in small_disk.iterdir()) == [checkpoint.CHECKPOINT_FILE, "filler"]
    assert checkpoint.load(small_disk)["outcome"]["global_step"] == 4


def test_resume_of_a_damaged_run_record_is_one_line_and_leaves_it(tmp_path, capsys):
    from harness.cli import main

    cfg = [f"results_root={tmp_path}", "experiment=damaged", *TINY, "max_steps=2"]
    run_job(compose(cfg))
    (record,) = tmp_path.rglob("run.json")
    record.write_text("{half a record")
    capsys.readouterr()
    assert main(["run", *cfg, "resume=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pacer: error: run record {record} cannot be read (") and err.endswith("): move it aside") and "\n" not in err
    assert record.read_text() == "{half a record"


def _preempted_run(tmp_path: Path, experiment: str) -> tuple[list[str], Path]:
    """A run stopped by a signal at step 10 with its checkpoint, as `pacer run` leaves it."""
    cfg = [f"results_root={tmp_path}", f"experiment={experiment}", *TINY]
    job = prepare_job(compose(cfg))
    runner = Runner(job.workload, job.submission.impl, job.hyperparameters, job.settings, on_eval=job.run_dir.append_eval)
    runner.should_stop = lambda: runner.outcome.global_step == 10
    runner.run()
    checkpoint.save(runner, job.run_dir.path, preemptions=1)
    job.run_dir.write_run({"status": "preempted", "config": job.cfg, "started_at": "2026-12-01T00:00:00+00:00"})
    return cfg, job.run_dir.path


@pytest.mark.parametrize(("change", "expected"), [
    (["seed=5"], "seed 0 -> 5"),
    (["hparams.learning_rate=0.001"], "hparams.learning_rate None -> 0.001"),
    (["workload.hidden=64"], "workload.hidden 32 -> 64"),
])
def test_resume_with_other_settings_is_refused_and_leaves_the_run(tmp_path, capsys, change, expected):
    from harness.cli import main

    cfg, run_dir = _preempted_run(tmp_path, "changed")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    capsys.readouterr()
    assert main(["run", *cfg, *change, "resume=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pacer: error: resume=true: the run in {run_dir} was started with other settings (changed: ") and expected in err, err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_resume_takes_the_evals_before_the_checkpoint_from_the_checkpoint(tmp_path):
    """A log damaged after the run stopped (a line edited, the file emptied) neither drops nor
    alters the evals the checkpoint holds."""
    cfg, run_dir = _preempted_run(tmp_path, "damaged_log")
    kept = checkpoint.load(run_dir)["outcome"]["evals"]
    (run_dir / "evals.jsonl").write_text('{"global_step": "abc"}\nnot json\n')
    run_job(compose([*cfg, "resume=true"]))
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert evals[:len(kept)] == json.loads(json.dumps(kept)) and [e["global_step"] for e in evals] == [1, 4, 8, 12, 16, 20, 24]


def test_a_second_process_on_the_same_run_is_refused(tmp_path, capsys):
    import fcntl

    from harness.cli import main

    cfg, run_dir = _preempted_run(tmp_path, "busy")
    holder = os.open(run_dir, os.O_RDONLY)  # what a running `pacer run` holds
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        capsys.readouterr()
        assert main(["run", *cfg, "resume=true"]) == 2
        assert capsys.readouterr().err.strip() == f"pacer: error: another pacer process is running the run in {run_dir}: wait for it to end, or stop it first"
    finally:
        os.close(holder)
    assert run_job(compose([*cfg, "resume=true"]))["status"] == "step_cap"  # free once the other process is gone
