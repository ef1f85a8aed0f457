"""Preemption: a run stopped at a step boundary and resumed from its checkpoint gives, on CPU
in deterministic mode, the same (step, metrics) eval sequence as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import checkpoint
from harness.cli import compose_config
from harness.job import prepare_job, run_job
from harness.runner import Runner

REPO = Path(__file__).resolve().parents[1]
TINY = ["workload.num_samples=1000", "workload.hidden=32", "eval_every_steps=4", "max_steps=24", "max_runtime_sec=600", "quiet=true", "+hparams.dropout_rate=0.1"]


def _comparable(evals: list[dict[str, object]]) -> list[dict[str, object]]:
    """Step, examples and metrics of each eval: everything but the clock readings."""
    return [{k: v for k, v in row.items() if not k.startswith("accumulated_") and k != "total_duration"} for row in evals]


def _runner(tmp_path: Path, experiment: str, **kwargs) -> Runner:
    job = prepare_job(compose_config([f"results_root={tmp_path}", f"experiment={experiment}", *TINY]))
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
    clock_after = [row["accumulated_submission_time"] for row in resumed.evals]
    assert clock_after == sorted(clock_after) and clock_after[3] >= saved["clock"]["totals"]["submission"]  # step 12: the clock continued from step 10


def test_resume_without_checkpoint_restarts_and_drops_stale_evals(tmp_path):
    cfg = [f"results_root={tmp_path}", "experiment=restart", *TINY]
    run_job(compose_config(cfg))
    run_dir = next(tmp_path.rglob("run.json")).parent
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(record | {"status": "running"}))  # as if SIGKILLed
    again = run_job(compose_config([*cfg, "resume=true"]))
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert again["status"] == "step_cap" and again["restarts"] == 1 and again["preemptions"] == 0
    assert [e["global_step"] for e in evals] == [1, 4, 8, 12, 16, 20, 24]


def _pacer_run(tmp_path: Path, experiment: str, *extra: str) -> subprocess.Popen:
    args = [f"results_root={tmp_path}", f"experiment={experiment}", *TINY, "max_steps=200", "eval_every_steps=50", "--quiet", *extra]
    env = os.environ | {"PYTHONPATH": str(REPO)}
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
