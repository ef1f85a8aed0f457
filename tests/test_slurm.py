"""Sweeps on a real one-node Slurm cluster (tests/slurm/, installed by tests/system/setup.d/10-slurm.sh).

Skips, saying why, where Slurm is not installed; starts the cluster for the session when it is
installed but not running (as root), and stops what it started."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from vision_data import make_imagenet

from harness.cli import main
from harness.core.errors import PacerUserError
from harness.experiments.job import run_job
from harness.experiments.launchers import ResourceClass, _slurm_parameters, resource_class
from harness.experiments.run_config import compose
from harness.experiments.sweep import MANIFEST, expand_grid

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
TINY = ["ruleset.num_studies=1", "max_steps=3", "eval_every_steps=2", "workload.num_samples=600", "workload.hidden=16", "max_runtime_sec=600", "launcher=slurm"]


def _controller_up() -> bool:
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return " is UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm():
    if shutil.which("sinfo") is None or shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed (tests/system/setup.d/10-slurm.sh installs it as root where apt works)")
    started = False
    if not _controller_up():
        if os.geteuid() != 0:
            pytest.skip("Slurm is installed but not running, and only root can start the test cluster")
        subprocess.run(["bash", str(SLURM_DIR / "configure.sh")], check=True)
        subprocess.run(["bash", str(SLURM_DIR / "start.sh")], check=True)
        started = True
    yield
    if started:
        subprocess.run(["bash", str(SLURM_DIR / "stop.sh")], check=False)


def _manifest(root: Path, experiment: str) -> dict[str, object]:
    return json.loads((root / experiment / MANIFEST).read_text())


def _wait_settled(root: Path, experiment: str, capsys, timeout: float = 240) -> str:
    """`pacer status --wait`, bounded: the table once nothing is queued or running."""
    deadline = time.monotonic() + timeout
    main(["status", f"results_root={root}", f"experiment={experiment}", "--wait"])
    assert time.monotonic() < deadline
    return capsys.readouterr().out


def _records(root: Path, experiment: str) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((root / experiment).rglob("run.json"))]


def test_external_sweep_runs_as_job_arrays_and_a_rerun_submits_nothing(slurm, tmp_path, capsys):
    args = ["sweep", f"results_root={tmp_path}", "experiment=grid", "submission=[nadamw,adamw]", "workload=[mnist1d_mlp,mnist1d_mlp_gelu]", "ruleset.num_trials=1", *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "launching 4 on slurm" in out and "Slurm job array" in out
    assert all("_" in e["job_id"] for e in _manifest(tmp_path, "grid")["jobs"].values())  # array tasks
    table = _wait_settled(tmp_path, "grid", capsys)
    assert "4 done, 0 running, 0 pending, 0 failed" in table, table
    records = _records(tmp_path, "grid")
    assert sorted((r["submission"], r["workload"]) for r in records) == sorted((s, w) for s in ("nadamw", "adamw") for w in ("mnist1d_mlp", "mnist1d_mlp_gelu"))
    assert all(r["status"] == "step_cap" and r["final"]["num_evals"] == 2 and r["hyperparameters"]["learning_rate"] != 0.01 for r in records)

    assert main(args) == 0
    assert "launching 0" in capsys.readouterr().out


def _wait_for(path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _sigkill_task(job_id: str) -> None:
    """SIGKILL the job's task process itself (`scancel --signal=KILL` is a graceful cancel:
    SIGCONT and SIGTERM first)."""
    real_id = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%A"], capture_output=True, text=True, check=True).stdout.strip()
    listed = subprocess.run(["scontrol", "listpids", real_id], capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    pids = [int(cols[0]) for cols in map(str.split, listed) if cols[2] == "0" and cols[3] == "0"]
    assert pids, listed
    os.kill(pids[0], 9)


def test_preempted_and_killed_jobs_end_with_consistent_records(slurm, tmp_path, capsys):
    args = ["sweep", f"results_root={tmp_path}", "experiment=faults", "ruleset.num_trials=2", *TINY, "workload=[mnist1d_mlp]", "max_steps=300", "eval_every_steps=100"]
    assert main(args) == 0
    jobs = _manifest(tmp_path, "faults")["jobs"]
    preempt, kill = (jobs[f"nadamw/mnist1d_mlp/study_0/trial_{t}"] for t in (0, 1))
    _wait_for(tmp_path / preempt["run_dir"] / "run.json")  # the run catches USR2 from here on
    subprocess.run(["scancel", "--signal=USR2", preempt["job_id"]], check=True)
    _wait_for(tmp_path / kill["run_dir"] / "run.json")
    _sigkill_task(kill["job_id"])

    table = _wait_settled(tmp_path, "faults", capsys)
    assert "1 done, 0 running, 0 pending, 1 failed" in table and "killed?" in table, table
    assert main(args) == 0  # the re-run resubmits only the killed cell
    assert "launching 1" in capsys.readouterr().out
    assert "2 done" in _wait_settled(tmp_path, "faults", capsys)

    for record in _records(tmp_path, "faults"):
        evals = [json.loads(line) for line in (tmp_path / "faults" / "external/nadamw/mnist1d_mlp" / f"study_0/trial_{record['trial']}" / "evals.jsonl").read_text().splitlines()]
        assert record["status"] == "step_cap" and [e["global_step"] for e in evals] == [1, 100, 200, 300]
        assert (record["preemptions"], record["restarts"]) == ((1, 1) if record["trial"] == 0 else (0, 1))


def test_controller_down_is_a_clear_error_before_submitting(slurm, tmp_path, capsys, monkeypatch):
    conf = tmp_path / "slurm.conf"
    conf.write_text(Path("/etc/slurm/slurm.conf").read_text() + "SlurmctldPort=6999\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert main(["sweep", f"results_root={tmp_path}", "experiment=down", *TINY, "workload=[mnist1d_mlp]"]) == 2
    assert "the Slurm controller is not reachable" in capsys.readouterr().err
    assert not (tmp_path / "down").exists()


def test_unknown_partition_is_one_line(slurm, tmp_path, capsys):
    assert main(["sweep", f"results_root={tmp_path}", "experiment=part", *TINY, "workload=[mnist1d_mlp]", "launcher.partition=nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pacer: error: sbatch refused the job array:") and "invalid partition" in err.lower() and "\n" not in err
    assert all(e["state"] == "pending" and e["attempts"] == 0 for e in _manifest(tmp_path, "part")["jobs"].values())


def test_hydra_multirun_through_submitit_slurm(slurm, tmp_path):
    args = ["run", "-m", "trial=0,1", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10",
            f"results_root={tmp_path}", "experiment=hydra", *[a for a in TINY if not a.startswith(("ruleset", "launcher"))]]
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Bypassing sacct error" not in done.stderr
    assert sorted(r["trial"] for r in _records(tmp_path, "hydra")) == [0, 1]


def test_a_preempted_hydra_multirun_job_is_requeued_and_resumes(slurm, tmp_path):
    """Under hydra/launcher=submitit_slurm, SIGUSR2 makes the run checkpoint and hand over to
    submitit, which requeues the job; the requeued job resumes its own run to the eval
    sequence of an uninterrupted one, and the multirun exits 0 only then."""
    args = ["run", "-m", "trial=0", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10", "hydra.launcher.max_num_timeout=2",
            f"results_root={tmp_path}", "experiment=hpre", "max_steps=300", "eval_every_steps=100",
            *[a for a in TINY if not a.startswith(("ruleset", "launcher", "max_steps", "eval_every"))]]
    multirun = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "hpre" / "external" / "nadamw" / "mnist1d_mlp" / "study_0" / "trial_0"
    _wait_for(run_dir / "run.json")  # the run catches USR2 from here on
    (job_id,) = {p.name.split("_")[0] for p in (tmp_path / "hpre" / ".multirun" / ".submitit").iterdir() if p.name.split("_")[0].isdigit()}
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    out, err = multirun.communicate(timeout=300)
    assert multirun.returncode == 0, err[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    evals = [json.loads(line)["global_step"] for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert record["status"] == "step_cap" and record["preemptions"] == 1 and evals == [1, 100, 200, 300], (record["status"], evals, err[-2000:])


def test_resource_classes_follow_the_devices_of_a_cell():
    launcher = OmegaConf.to_container(compose(["launcher=slurm"]).launcher)
    budget = OmegaConf.to_container(compose(["max_runtime_sec=600"]), resolve=True)  # a cell's whole config
    one, two_cpu = (resource_class(budget | {"device": "cpu", "devices": d}, launcher) for d in (1, 2))
    assert (one.nodes, one.devices_per_node, two_cpu.nodes, two_cpu.devices_per_node) == (1, 1, 1, 2) and one != two_cpu
    assert _slurm_parameters(launcher, two_cpu).items() >= {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 2, "mem_gb": 4.0, "timeout_min": 20}.items()
    sixteen = resource_class(budget | {"device": "cuda", "devices": 16}, launcher)
    assert _slurm_parameters(launcher, sixteen).items() >= {"nodes": 2, "tasks_per_node": 1, "gpus_per_node": 8, "cpus_per_task": 8, "mem_gb": 16.0}.items()
    assert resource_class(budget | {"device": "cuda", "devices": 4}, launcher) == ResourceClass(20, 1, 4, True)
    with pytest.raises(PacerUserError, match="devices=12 does not fill whole nodes of launcher.gpus_per_node=8"):
        resource_class(budget | {"device": "cuda", "devices": 12}, launcher)


def test_suite_overrides_apply_to_one_workload_and_refuse_unknown_keys():
    cells = expand_grid(["ruleset.num_trials=1", "ruleset.num_studies=1", "suite.overrides={mnist1d_mlp:{devices:2,workload:{hidden:8}}}"], ["nadamw"], ["mnist1d_mlp", "mnist1d_cnn"])
    assert {c.key.split("/")[1]: (c.cfg["devices"], c.cfg["workload"].get("hidden")) for c in cells} == {"mnist1d_mlp": (2, 8), "mnist1d_cnn": (1, None)}
    with pytest.raises(PacerUserError, match="^suite.overrides.mnist1d_mlp: Key 'nosuch' is not in struct"):
        expand_grid(["suite.overrides={mnist1d_mlp:{workload:{nosuch:1}}}"], ["nadamw"], ["mnist1d_mlp"])


def test_a_two_device_workload_gets_its_own_job_array_and_runs_two_processes(slurm, tmp_path, capsys, monkeypatch):
    """mnist1d_mlp on one process and imagenet_vit (tiny, generated data) with devices=2: two
    job arrays of different resources; the second runs torchrun with two gloo processes in its
    allocation, and its evals match the same cell run on one process."""
    data = make_imagenet(tmp_path / "imagenet")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(REPO / "tests")]))  # the jobs import the test submission
    tiny_vit = {"data_dir": str(data), "num_workers": 0, "eval_num_workers": 0, "eval_batch_size": 8, "eval_train_size": 6, "width": 32, "depth": 2,
                "mlp_dim": 64, "num_heads": 2, "patch_size": 8, "image_size": 32, "resize_size": 36, "mixup_alpha": 0, "step_hint": 20}
    overrides = {"mnist1d_mlp": {"workload": {"num_samples": 600, "hidden": 16}},
                 "imagenet_vit": {"devices": 2, "submission": {"module": "fixed_batch_submission"}, "workload": tiny_vit}}
    args = ["sweep", f"results_root={tmp_path}", "experiment=devices", "submission=[momentum]", "workload=[mnist1d_mlp,imagenet_vit]", "launcher=slurm",
            "+ruleset.points=[{learning_rate:0.5,dropout_rate:0.0}]", "ruleset.num_studies=1", "max_steps=2", "eval_every_steps=1", "max_runtime_sec=600",
            f"suite.overrides={_hydra_value(overrides)}"]
    assert main(args) == 0
    jobs = _manifest(tmp_path, "devices")["jobs"]
    arrays = {key.split("/")[1]: entry["job_id"].split("_")[0] for key, entry in jobs.items()}
    assert len(set(arrays.values())) == 2, arrays
    scripts = {path.name.split("_")[0]: path.read_text() for path in (tmp_path / "devices" / ".submitit").glob("*_submission.sh")}
    assert "--cpus-per-task=2" in scripts[arrays["imagenet_vit"]] and "--cpus-per-task=1" in scripts[arrays["mnist1d_mlp"]]
    table = _wait_settled(tmp_path, "devices", capsys, timeout=400)
    assert "2 done, 0 running, 0 pending, 0 failed" in table, table

    records = {r["workload"]: r for r in _records(tmp_path, "devices")}
    two = records["imagenet_vit"]
    assert two["options"]["world_size"] == 2 and records["mnist1d_mlp"]["options"].get("world_size", 1) == 1
    assert two["status"] == "step_cap" and two["final"]["num_evals"] == 2
    one = run_job(two["config"] | {"devices": 1, "results_root": str(tmp_path / "one"), "resume": False})
    assert one["options"]["world_size"] == 1
    evals = {n: [json.loads(line) for line in next((tmp_path / root).rglob("imagenet_vit/study_0/trial_0/evals.jsonl")).read_text().splitlines()]
             for n, root in ((1, "one"), (2, "devices"))}
    assert [r["examples_seen"] for r in evals[2]] == [r["examples_seen"] for r in evals[1]] == [4, 8]
    for a, b in zip(evals[1], evals[2], strict=True):
        for key in ("train/loss", "validation/loss", "validation/accuracy", "test/loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key


def _hydra_value(value: object) -> str:
    """A nested mapping in Hydra's override syntax (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_hydra_value(v)}" for key, v in value.items()) + "}"
    return repr(value) if isinstance(value, str) else str(value)
