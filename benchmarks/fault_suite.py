"""Fault suite: what each kind of fault costs a run, counted on real runs.

For every fault kind the suite starts real `pacer` processes on a small `mnist1d_mlp`
(1,000 samples, 32 hidden units, dropout 0.1, 1,200 steps, an eval every 100 steps,
a periodic checkpoint every 0.3 s), injects the fault at a random moment, continues the run
the way a user would (`resume=true`, the next `pacer sweep`, Slurm's requeue) and audits the
results folder:

* evals lost: evals that were whole on disk right after the fault and whose step, examples
  and metrics are missing afterwards (goal 0);
* evals redone: of those, the ones past the run's last checkpoint, which the resumed run
  computes again (same metrics, the clock re-measured: resume continues the clock from the
  checkpoint, as AlgoPerf does); a shorter `checkpoint_every_sec` bounds them;
* records corrupted: a run.json that does not parse or has an unknown status, an eval line
  that does not parse once the run has ended, eval steps not strictly increasing, a finished
  record whose eval count differs from its evals.jsonl, or a tree `pacer score`'s loader
  cannot read (goal 0);
* resume = uninterrupted: the run ended `step_cap` with the same (step, examples, metrics)
  eval sequence as an uninterrupted run of the same cell. "n/a" where the fault ends the run
  for good (an exception, a NaN) or nothing began (refused before start): the evals before
  the fault are then compared with the uninterrupted run's first evals.

Faults: SIGKILL between steps and during an eval's write; SIGUSR2 and SIGTERM under each
launcher (`pacer run`, `pacer sweep` local and Slurm, `pacer run -m` with Hydra's
submitit_local and submitit_slurm launchers); an exception in the submission; a NaN loss;
a full disk (a tmpfs results root) and a results root made read-only, before and during a
run; two sweeps of one experiment at once; the Slurm controller stopped mid-sweep; a record
the sweep did not write at a cell's path. The disk faults mount tmpfs and need root; the
Slurm rows need the test cluster (tests/system/setup.d/10-slurm.sh; started here if it is
installed and down). A row that cannot run says why instead of a figure.

    .venv/bin/python benchmarks/fault_suite.py [--repeats 3] [--only KIND ...] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
CELL = ["workload=mnist1d_mlp", "workload.num_samples=1000", "workload.hidden=32", "max_steps=1200", "eval_every_steps=100",
        "max_runtime_sec=600", "checkpoint_every_sec=0.3", "quiet=true"]
RUN_CELL = [*CELL, "+hparams.dropout_rate=0.1"]  # dropout: a resumed run must also restore the random streams
SWEEP_CELL = [*CELL, "ruleset.num_trials=1", "ruleset.num_studies=1"]
FINAL_STEPS = list(range(0, 1201, 100))[1:]
TRIAL_DIR = "external/{submission}/mnist1d_mlp/study_0/trial_0"
TIMEOUT = 600.0

FAULTY_SUBMISSION = '''"""NAdamW with a fault injected at a step (PACER_FAULT=raise@N or nan@N): the fault suite's."""
import os

import torch

from harness.plugins import submission_kit
from submissions.nadamw import data_selection, get_batch_size, init_optimizer_state  # noqa: F401

KIND, _, AT = os.environ.get("PACER_FAULT", "none@-1").partition("@")


def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters, batch, loss_type,
                  optimizer_state, eval_results, global_step, rng, train_state=None):
    if global_step == int(AT) and KIND == "raise":
        raise RuntimeError(f"fault injected at step {global_step}")
    if global_step == int(AT) and KIND == "nan":
        with torch.no_grad():
            next(current_param_container.parameters()).fill_(float("nan"))
    return submission_kit.optimizer_update(workload, current_param_container, current_params_types, model_state, hyperparameters, batch,
                                           loss_type, optimizer_state, eval_results, global_step, rng, train_state)
'''


# --- one trial's outcome ------------------------------------------------------------------


@dataclass
class Trial:
    evals_lost: int
    corrupted: int
    evals_redone: int
    resumed_identical: bool | None
    """None: the fault ends the run for good, or nothing began."""
    note: str = ""


@dataclass
class Row:
    fault: str
    launcher: str
    trials: list[Trial] = field(default_factory=list)
    skipped: str = ""

    def cells(self) -> list[str]:
        if self.skipped:
            return [self.fault, self.launcher, "0", "-", "-", "-", f"not run: {self.skipped}"]
        resumed = [t.resumed_identical for t in self.trials if t.resumed_identical is not None]
        notes = sorted({t.note for t in self.trials if t.note})
        return [self.fault, self.launcher, str(len(self.trials)), str(sum(t.evals_lost for t in self.trials)), str(sum(t.evals_redone for t in self.trials)),
                str(sum(t.corrupted for t in self.trials)), (f"{sum(resumed)}/{len(resumed)}" if resumed else "n/a") + (f" ({'; '.join(notes)})" if notes else "")]


# --- running pacer ------------------------------------------------------------------------


def pacer(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m harness ARGS` from the repository, one torch thread (runs share the cores)."""
    full_env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, expect: Sequence[int] = (0,)) -> str:
    out, err = process.communicate(timeout=TIMEOUT)
    if process.returncode not in expect:
        raise RuntimeError(f"pacer exited {process.returncode} (expected {list(expect)}): {(err or out)[-1500:]}")
    return err


def whole_evals(run_dir: Path) -> list[dict[str, object]]:
    """The evals whose line is whole on disk (a torn last line is not a finished eval)."""
    path = run_dir / "evals.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def comparable(evals: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in row.items() if not k.startswith("accumulated_") and k != "total_duration"} for row in evals]


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen | None = None, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the run ended before {what}: {process.stderr.read()[-1500:] if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def evals_at_least(run_dir: Path, count: int) -> Callable[[], bool]:
    return lambda: len(whole_evals(run_dir)) >= count


# --- the audit ----------------------------------------------------------------------------


def audit(root: Path, run_dir: Path, before: list[dict[str, object]], reference: list[dict[str, object]], *, resumable: bool = True,
          landed: str | None = None) -> Trial:
    """Count what the fault cost `run_dir` (see the module docstring). `landed`: the record's
    counter (`preemptions`, `restarts`) that shows the fault hit the run before it ended."""
    from harness.core.store import STATUSES, TERMINAL_STATUSES, load_results

    corrupted, note = 0, ""
    try:
        record = json.loads((run_dir / "run.json").read_text())
        corrupted += record.get("status") not in STATUSES
    except (OSError, json.JSONDecodeError):
        record, corrupted = {}, 1
    lines = (run_dir / "evals.jsonl").read_text().splitlines() if (run_dir / "evals.jsonl").exists() else []
    after = []
    for line in lines:
        try:
            after.append(json.loads(line))
        except json.JSONDecodeError:
            corrupted, note = corrupted + 1, "a torn eval line after the run ended"
    steps = [row["global_step"] for row in after]
    corrupted += steps != sorted(set(steps))
    if record.get("status") in TERMINAL_STATUSES:
        corrupted += record["final"]["num_evals"] != len(after)
    try:
        load_results(root)
    except Exception as e:  # noqa: BLE001 - any failure to load is what is being counted
        corrupted, note = corrupted + 1, f"load_results: {e}"
    results_after = comparable(after)
    lost = sum(row not in results_after for row in comparable(before))
    redone = sum(row not in after for row in before) - lost
    if not resumable:
        steps_before = {row["global_step"] for row in before}
        same = comparable(before) == comparable([row for row in reference if row["global_step"] in steps_before])
        return Trial(lost, corrupted, redone, None, note or ("" if same else "evals before the fault differ from the uninterrupted run"))
    identical = record.get("status") == "step_cap" and results_after == comparable(reference)
    if landed and not record.get(landed):
        note = note or f"the fault came after the run ended ({landed} 0)"
    return Trial(lost, corrupted, redone, identical, note)


# --- the suite ----------------------------------------------------------------------------


class Suite:
    """Runs the fault kinds in a scratch folder; each trial gets its own experiment."""

    def __init__(self, scratch: Path, repeats: int, rng: random.Random):
        self.scratch, self.repeats, self.rng = scratch, repeats, rng
        self.root = scratch / "results"
        self._references: dict[str, list[dict[str, object]]] = {}
        self._count = 0
        self.slurm_started = False

    def experiment(self, stem: str) -> str:
        self._count += 1
        return f"{stem}-{self._count}"

    def run_dir(self, experiment: str, root: Path | None = None, submission: str = "nadamw") -> Path:
        return (root or self.root) / experiment / TRIAL_DIR.format(submission=submission)

    # references: the same cells, uninterrupted

    def reference(self, kind: str) -> list[dict[str, object]]:
        """The uninterrupted eval sequence of `kind`'s cell: `run` (pacer run, default point),
        `sweep` (trial 0's point of a one-cell sweep), `faulty` (the faulty file, no fault)."""
        if kind not in self._references:
            experiment = f"reference-{kind}"
            if kind == "run":
                finish(pacer("run", f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL))
            elif kind == "sweep":
                finish(pacer("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=local"))
            else:
                finish(pacer("run", f"results_root={self.root}", f"experiment={experiment}", f"submission={self.faulty_file()}", *RUN_CELL))
            submission = "faulty" if kind == "faulty" else "nadamw"
            evals = whole_evals(self.run_dir(experiment, submission=submission))
            assert [e["global_step"] for e in evals] == [1, *FINAL_STEPS], f"the {kind} reference did not run to its step cap"
            self._references[kind] = evals
        return self._references[kind]

    def faulty_file(self) -> Path:
        folder = self.scratch / "faulty"
        if not folder.exists():
            folder.mkdir()
            (folder / "faulty.py").write_text(FAULTY_SUBMISSION)
            shutil.copy(REPO / "submissions" / "nadamw.json", folder / "tuning_search_space.json")
        return folder / "faulty.py"

    def random_eval_count(self) -> int:
        """After which whole eval to strike: anywhere from the first to the third-to-last (a
        signal through scancel takes a second or two to land)."""
        return self.rng.randint(1, len(FINAL_STEPS) - 3)

    def strike_delay(self) -> float:
        return self.rng.uniform(0.0, 0.25)

    # SIGKILL

    def sigkill_mid_step(self) -> Trial:
        experiment = self.experiment("kill")
        run_dir = self.run_dir(experiment)
        args = ("run", f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL)
        process = pacer(*args)
        wait_until(lambda: (run_dir / "checkpoint.pt").exists() and evals_at_least(run_dir, self.random_eval_count())(), "a checkpoint and evals", process)
        time.sleep(self.strike_delay())
        process.kill()
        process.wait()
        before = whole_evals(run_dir)
        finish(pacer(*args, "resume=true"))
        return audit(self.root, run_dir, before, self.reference("run"), landed="restarts")

    def sigkill_eval_write(self) -> Trial:
        """The process SIGKILLs itself halfway through writing an eval line (fsynced)."""
        experiment = self.experiment("torn")
        run_dir = self.run_dir(experiment)
        args = ("run", f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL)
        process = subprocess.Popen([sys.executable, __file__, "--child-torn-write", str(self.random_eval_count() + 1), *args], cwd=REPO,
                                   env=os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        finish(process, expect=(-signal.SIGKILL,))
        text = (run_dir / "evals.jsonl").read_text()
        assert not text.endswith("\n"), "the eval write was not torn"
        before = whole_evals(run_dir)
        finish(pacer(*args, "resume=true"))
        return audit(self.root, run_dir, before, self.reference("run"), landed="restarts")

    # stop signals under each launcher

    def stop_signal(self, signum: signal.Signals, launcher: str) -> Trial:
        return {"pacer run": self._signal_run, "sweep local": self._signal_sweep_local, "sweep slurm": self._signal_sweep_slurm,
                "run -m submitit_local": self._signal_hydra_local, "run -m submitit_slurm": self._signal_hydra_slurm}[launcher](signum)

    def _signal_run(self, signum: signal.Signals) -> Trial:
        experiment = self.experiment(f"sig{signum.name}")
        run_dir = self.run_dir(experiment)
        args = ("run", f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL, "checkpoint_every_sec=0")
        process = pacer(*args)
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals", process)
        time.sleep(self.strike_delay())
        process.send_signal(signum)
        finish(process, expect=(3,))
        before = whole_evals(run_dir)
        finish(pacer(*args, "resume=true"))
        return audit(self.root, run_dir, before, self.reference("run"), landed="preemptions")

    def _signal_sweep_local(self, signum: signal.Signals) -> Trial:
        experiment = self.experiment(f"local{signum.name}")
        run_dir = self.run_dir(experiment)
        args = ("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=local", "checkpoint_every_sec=0")
        sweep = pacer(*args)
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals", sweep)
        time.sleep(self.strike_delay())
        (log,) = (self.root / experiment / ".submitit").glob("*_0_log.out")
        os.kill(int(log.name.split("_")[0]), signum)  # the job's own process, as a time limit would
        finish(sweep)
        before = whole_evals(run_dir)
        assert json.loads((run_dir / "run.json").read_text())["status"] in ("preempted", "step_cap")
        finish(pacer(*args))  # the next sweep continues the preempted cell
        return audit(self.root, run_dir, before, self.reference("sweep"), landed="preemptions")

    def _signal_sweep_slurm(self, signum: signal.Signals) -> Trial:
        experiment = self.experiment(f"slurm{signum.name}")
        run_dir = self.run_dir(experiment)
        finish(pacer("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=slurm", "checkpoint_every_sec=0"))
        (entry,) = json.loads((self.root / experiment / "sweep.json").read_text())["jobs"].values()
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals")
        time.sleep(self.strike_delay())
        subprocess.run(["scancel", f"--signal={signum.name.removeprefix('SIG')}", str(entry["job_id"])], check=True)
        before = whole_evals(run_dir)
        finish(pacer("status", f"results_root={self.root}", f"experiment={experiment}", "--wait"))
        return audit(self.root, run_dir, before, self.reference("sweep"), landed="preemptions")

    def _hydra_args(self, experiment: str, launcher: str) -> list[str]:
        extra = ["hydra.launcher.partition=debug", "hydra.launcher.max_num_timeout=2"] if launcher == "submitit_slurm" else []
        return ["run", "-m", "trial=0", f"hydra/launcher={launcher}", "hydra.launcher.timeout_min=10", *extra,
                f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL, "checkpoint_every_sec=0"]

    def _signal_hydra_local(self, signum: signal.Signals) -> Trial:
        experiment = self.experiment(f"hlocal{signum.name}")
        run_dir = self.run_dir(experiment)
        multirun = pacer(*self._hydra_args(experiment, "submitit_local"))
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals", multirun)
        time.sleep(self.strike_delay())
        (controller,) = [p.name for p in (self.root / experiment / ".multirun" / ".submitit").iterdir() if p.name.isdigit()]
        task = int(Path(f"/proc/{controller}/task/{controller}/children").read_text().split()[0])
        os.kill(task, signum)
        before = whole_evals(run_dir)
        finish(multirun)
        return audit(self.root, run_dir, before, self.reference("run"), landed="preemptions")

    def _signal_hydra_slurm(self, signum: signal.Signals) -> Trial:
        experiment = self.experiment(f"hslurm{signum.name}")
        run_dir = self.run_dir(experiment)
        multirun = pacer(*self._hydra_args(experiment, "submitit_slurm"))
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals", multirun)
        time.sleep(self.strike_delay())
        (job_id,) = {p.name.split("_")[0] for p in (self.root / experiment / ".multirun" / ".submitit").iterdir() if p.name.split("_")[0].isdigit()}
        subprocess.run(["scancel", f"--signal={signum.name.removeprefix('SIG')}", job_id], check=True)
        before = whole_evals(run_dir)
        finish(multirun)
        return audit(self.root, run_dir, before, self.reference("run"), landed="preemptions")

    # faults of the submission

    def submission_fault(self, kind: str) -> Trial:
        """An exception (ends `error`) or a NaN in the parameters (ends `diverged`) at a random step."""
        experiment = self.experiment(kind)
        run_dir = self.run_dir(experiment, submission="faulty")
        at = self.rng.randint(2, FINAL_STEPS[-2])
        finish(pacer("run", f"results_root={self.root}", f"experiment={experiment}", f"submission={self.faulty_file()}", *RUN_CELL,
                     env={"PACER_FAULT": f"{kind}@{at}"}), expect=(1,) if kind == "raise" else (0,))
        record = json.loads((run_dir / "run.json").read_text())
        expected = {"raise": "error", "nan": "diverged"}[kind]
        before_fault = [e for e in whole_evals(run_dir) if e["global_step"] <= at]  # the eval at step `at` saw no fault yet
        trial = audit(self.root, run_dir, before_fault, self.reference("faulty"), resumable=False)
        if record["status"] != expected or len(before_fault) != sum(1 for s in [1, *FINAL_STEPS] if s <= at):
            trial.note = f"ended {record['status']} with {len(before_fault)} evals up to step {at}"
        return trial

    # the results folder

    @contextlib.contextmanager
    def tmpfs(self, size_kib: int) -> Iterator[Path]:
        mount = Path(tempfile.mkdtemp(dir=self.scratch, prefix="disk-"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], check=True)
        try:
            yield mount
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)

    def full_disk(self) -> Trial:
        """The results root fills up mid-run; resumed once there is room again."""
        def fill(disk: Path) -> None:
            with contextlib.suppress(OSError), open(disk / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)  # until ENOSPC

        return self._storage_fault("full", 2048, fill, "No space left on device", lambda disk: (disk / "filler").unlink())

    def read_only_before_start(self) -> Trial:
        with self.tmpfs(1024) as disk:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            err = finish(pacer("run", f"results_root={disk}", f"experiment={self.experiment('ro')}", *RUN_CELL), expect=(2,))
            one_line = len(err.strip().splitlines()) == 1 and "cannot write the results root" in err
            return Trial(0, 0, 0, None, "" if one_line else f"not one line: {err[-300:]}")

    def read_only_mid_run(self) -> Trial:
        """The results root is remounted read-only mid-run, then writable again and resumed."""
        def remount_read_only(disk: Path) -> None:
            while subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True).returncode != 0:
                time.sleep(0.001)  # busy while a file is open for writing

        return self._storage_fault("romid", 8192, remount_read_only, "Read-only file system",
                                   lambda disk: subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True))

    def _storage_fault(self, stem: str, size_kib: int, strike: Callable[[Path], None], reason: str, restore: Callable[[Path], object]) -> Trial:
        """A run on a tmpfs of `size_kib` whose file system `strike` makes refuse writes after a
        random eval: the run must stop in one line giving `reason` (exit 1); once `restore`d,
        `resume=true` continues it."""
        with self.tmpfs(size_kib) as disk:
            experiment = self.experiment(stem)
            run_dir = self.run_dir(experiment, root=disk)
            args = ("run", f"results_root={disk}", f"experiment={experiment}", *RUN_CELL)
            process = pacer(*args)
            wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals", process)
            strike(disk)
            err = finish(process, expect=(1,))
            assert reason in err.strip().splitlines()[-1], err[-500:]
            before = whole_evals(run_dir)
            restore(disk)
            finish(pacer(*args, "resume=true"))
            return audit(disk, run_dir, before, self.reference("run"), landed="restarts")

    # sweeps

    def two_sweeps(self) -> Trial:
        """Two `pacer sweep`s of one experiment started together: one runs, one is refused."""
        experiment = self.experiment("two")
        run_dir = self.run_dir(experiment)
        args = ("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=local")
        first, second = pacer(*args), pacer(*args)
        codes = sorted([first.wait(timeout=TIMEOUT), second.wait(timeout=TIMEOUT)])
        errors = (first.stderr.read() if first.stderr else "") + (second.stderr.read() if second.stderr else "")
        trial = audit(self.root, run_dir, [], self.reference("sweep"))
        records = list((self.root / experiment).rglob("run.json"))
        if codes != [0, 2] or "another pacer sweep of experiment" not in errors or len(records) != 1:
            trial.note = f"exit codes {codes}, {len(records)} records"
        return trial

    def controller_down(self) -> Trial:
        """slurmctld stopped for 10 s while the cell's job trains; the job runs on under slurmd."""
        experiment = self.experiment("ctld")
        run_dir = self.run_dir(experiment)
        finish(pacer("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=slurm"))
        wait_until(evals_at_least(run_dir, self.random_eval_count()), "evals")
        before = whole_evals(run_dir)
        pid = int((slurm_state_dir() / "run" / "slurmctld.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), "slurmctld to stop", timeout=30)
        time.sleep(10)
        subprocess.run(["bash", str(SLURM_DIR / "start.sh")], check=True, capture_output=True)
        finish(pacer("status", f"results_root={self.root}", f"experiment={experiment}", "--wait"))
        return audit(self.root, run_dir, before, self.reference("sweep"))

    def foreign_record(self) -> Trial:
        """A hand run sits at the sweep's cell: the sweep refuses in one line and leaves it as it is."""
        experiment = self.experiment("foreign")
        run_dir = self.run_dir(experiment)
        finish(pacer("run", f"results_root={self.root}", f"experiment={experiment}", *RUN_CELL, "max_steps=200"))
        record_bytes = (run_dir / "run.json").read_bytes()
        before = whole_evals(run_dir)
        err = finish(pacer("sweep", f"results_root={self.root}", f"experiment={experiment}", *SWEEP_CELL, "launcher=local"), expect=(2,))
        trial = audit(self.root, run_dir, before, before, resumable=False)
        refused = len(err.strip().splitlines()) == 1 and "did not write" in err
        trial.corrupted += (run_dir / "run.json").read_bytes() != record_bytes
        if not refused:
            trial.note = f"not refused in one line: {err[-300:]}"
        return trial


def slurm_state_dir() -> Path:
    out = subprocess.run(["bash", "-c", f"source {SLURM_DIR / 'env.sh'} && echo $PACER_SLURM_DIR"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def slurm_unavailable() -> str:
    """Why the Slurm rows cannot run, or "" (starting the test cluster when it is installed and down)."""
    if shutil.which("sinfo") is None or shutil.which("slurmctld") is None:
        return "Slurm not installed (tests/system/setup.d/10-slurm.sh)"
    if " is UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout:
        return ""
    if os.geteuid() != 0:
        return "the test cluster is down and only root can start it"
    subprocess.run(["bash", str(SLURM_DIR / "configure.sh")], check=True, capture_output=True)
    subprocess.run(["bash", str(SLURM_DIR / "start.sh")], check=True, capture_output=True)
    return ""


# --- main ---------------------------------------------------------------------------------


LAUNCHERS = ("pacer run", "sweep local", "run -m submitit_local", "sweep slurm", "run -m submitit_slurm")


def plan(suite: Suite) -> list[tuple[str, str, Callable[[], Trial], str]]:
    """(fault, launcher, trial function, what it needs: "", "root" or "slurm") for every row."""
    rows: list[tuple[str, str, Callable[[], Trial], str]] = [
        ("SIGKILL mid-step (periodic checkpoint)", "pacer run", suite.sigkill_mid_step, ""),
        ("SIGKILL during an eval write", "pacer run", suite.sigkill_eval_write, ""),
    ]
    for signum in (signal.SIGUSR2, signal.SIGTERM):
        for launcher in LAUNCHERS:
            rows.append((signum.name, launcher, lambda s=signum, la=launcher: suite.stop_signal(s, la), "slurm" if "slurm" in launcher else ""))
    rows += [
        ("exception in update_params", "pacer run", lambda: suite.submission_fault("raise"), ""),
        ("NaN in the parameters", "pacer run", lambda: suite.submission_fault("nan"), ""),
        ("full disk mid-run (tmpfs)", "pacer run", suite.full_disk, "root"),
        ("read-only results root before start", "pacer run", suite.read_only_before_start, "root"),
        ("results root remounted read-only mid-run", "pacer run", suite.read_only_mid_run, "root"),
        ("two sweeps of one experiment at once", "sweep local", suite.two_sweeps, ""),
        ("Slurm controller stopped 10 s mid-run", "sweep slurm", suite.controller_down, "slurm"),
        ("foreign record at a sweep cell (a hand run)", "sweep local", suite.foreign_record, ""),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="trials per fault kind")
    parser.add_argument("--only", nargs="*", default=[], help="run the rows whose fault or launcher contains one of these words")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strike moments")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="pacer-faults-"))
    suite = Suite(scratch, args.repeats, random.Random(args.seed))
    slurm_reason = slurm_unavailable()
    root_reason = "" if os.geteuid() == 0 else "mounting a tmpfs needs root"
    print(f"fault suite in {scratch}; {args.repeats} trial(s) per fault; load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    table: list[Row] = []
    start = time.monotonic()
    for fault, launcher, trial_fn, needs in plan(suite):
        if args.only and not any(word.lower() in f"{fault} {launcher}".lower() for word in args.only):
            continue
        row = Row(fault, launcher, skipped={"slurm": slurm_reason, "root": root_reason, "": ""}[needs])
        for _ in range(0 if row.skipped else args.repeats):
            try:
                row.trials.append(trial_fn())
            except Exception as e:  # noqa: BLE001 - a trial that could not be carried out is reported, not hidden
                row.trials.append(Trial(0, 0, 0, False, f"trial failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"))
        table.append(row)
        print(" | ".join(row.cells()), flush=True)
    print(f"\n{time.monotonic() - start:.0f} s; load average after: {os.getloadavg()[0]:.2f}\n")
    header = ["fault", "launcher", "runs", "evals lost", "evals redone", "records corrupted", "resume = uninterrupted"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(row.cells()) + " |")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _torn_write_child(strike_at: int, args: Sequence[str]) -> None:
    """`pacer ARGS` in this process, SIGKILLed halfway through writing its eval number `strike_at`."""
    from harness.cli import main as pacer_main
    from harness.core import store

    append, calls = store.RunDir.append_eval, [0]

    def append_then_die(self: store.RunDir, row: dict[str, object]) -> None:
        calls[0] += 1
        if calls[0] < strike_at:
            return append(self, row)
        line = json.dumps(row)
        with open(self.evals_path, "a", encoding="utf-8") as f:
            f.write(line[: len(line) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    store.RunDir.append_eval = append_then_die  # type: ignore[method-assign]
    sys.exit(pacer_main(list(args)))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child-torn-write":
        _torn_write_child(int(sys.argv[2]), sys.argv[3:])
    sys.exit(main())
