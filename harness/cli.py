"""`pacer VERB [overrides]`: the command-line entry point.

Each verb is a function taking the remaining arguments and returning an exit code. Bad input
anywhere surfaces as one line `pacer: error: ...` and exit code 2, before any training. Each
verb imports what it needs when it runs: the verbs that train nothing (`score`, `report`,
`status`, `import-algoperf`) and `--help` never load torch or Hydra (importing torch alone takes
~3 s; tests/test_cli.py checks)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.core.errors import PacerUserError

PREEMPTED_EXIT_CODE = 3

USAGE = """usage: pacer VERB [key=value ...]

verbs:
  run     one benchmark run, e.g. pacer run workload=mnist1d_mlp submission=nadamw seed=0 hparams.learning_rate=3e-3
          (devices=N: N DDP processes through torchrun, e.g. pacer run workload=imagenet_resnet50 device=cuda devices=8)
          (-m/--multirun: a Hydra multirun, e.g. with hydra/launcher=submitit_slurm)
  score   scores of results trees, e.g. pacer score results [--compat algoperf] [--format json] [--reference adamw]
  compare is X faster than Y? ratios with intervals and p-values, e.g. pacer compare results nadamw adamw [--format json]
  report  HTML report + Markdown leaderboard, e.g. pacer report results --out report
  import-algoperf  AlgoPerf logs as run records, e.g. pacer import-algoperf logs/ --out results --targets v0.5 --ruleset external [--overwrite]
  sweep   a tuning grid, e.g. pacer sweep experiment=demo suite=cpu submission=[nadamw,adamw] ruleset=external launcher=slurm
          (--dry: jobs that exit at once, to test the plumbing)
  status  where a sweep stands, e.g. pacer status experiment=demo [--wait]
  calibrate  set a workload's targets by AlgoPerf's procedure, e.g. pacer calibrate workload=digits_cnn trials=8 reruns=5
          [variant=V steps=N eval_every=N algorithms=adamw,nadamw,sgd_nesterov,momentum write=false]
  data    convert AlgoPerf's data layout of a workload into the files Pacer reads, e.g. pacer data convert finewebedu_lm ~/algoperf_data/fineweb_edu data/finewebedu
options:
  --quiet  plain progress lines instead of a progress bar
"""


def run_command(args: Sequence[str]) -> int:
    quiet = "--quiet" in args
    args = [a for a in args if a != "--quiet"] + (["quiet=true"] if quiet else [])
    from harness.experiments.run_config import normalize_overrides, submission_files

    overrides = normalize_overrides(args)
    if "-m" in overrides or "--multirun" in overrides:
        if files := submission_files(overrides):
            raise PacerUserError(f"pacer run -m takes submission configs, not the file {files[0]}: sweep a file with `pacer sweep submission={files[0]} ...`, "
                                 "or name it in a config under configs/submission/ (`file:`)")
        folders = check_multirun_folders(overrides)
        _hydra_multirun(overrides)
        return _multirun_exit_code(folders)
    from harness.core import distributed
    from harness.experiments.job import prepare_job, run_job
    from harness.experiments.run_config import compose

    cfg = compose(overrides)
    if isinstance(cfg.devices, int) and cfg.devices > 1 and not distributed.launched():
        prepare_job(cfg, create_run_dir=False)  # bad input fails here, before any process starts
        return distributed.launch(cfg.devices, ["run", *args])
    record = run_job(cfg)
    main = distributed.is_main()
    distributed.teardown()
    if not main:
        return 0
    print(summary_line(record))
    if record["status"] == "preempted":
        print("pacer: stopped by a signal; checkpoint saved: continue with the same command and resume=true", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0 if record["status"] != "error" else 1


def summary_line(record: dict[str, object]) -> str:
    ttt = record["time_to_target"]["validation"]
    steps = record["steps_to_target"]["validation"]
    unit = "reference s" if (record.get("clock") or {}).get("kind") == "normalized" else "s"
    reached = f"reached the target in {ttt:.1f} {unit} ({steps} steps)" if ttt is not None else f"ended {record['status']}"
    if record["status"] == "error":
        reached += f" ({error_reason(record)}; the traceback is in run.json)"
    path = "/".join(str(record[k]) for k in ("experiment", "ruleset", "submission", "workload"))
    return f"{record['submission']} on {record['workload']}: {reached}; record under {record['config']['results_root']}/{path}/study_{record['study']}/trial_{record['trial']}"


def error_reason(record: Mapping[str, object]) -> str:
    """The last line of an `error` record's traceback: the exception and its message."""
    lines = str(record.get("error") or "").strip().splitlines()
    return lines[-1] if lines else "no traceback recorded"


def check_multirun_folders(overrides: Sequence[str]) -> list[Path]:
    """Each job's run folder, in order, once every job's input is checked (`prepare_job`
    without touching its folder); refuse a multirun whose jobs would share one (one line
    naming the keys that set them apart and the fix), before any job starts: the folder names only the experiment,
    ruleset, submission, workload, study and trial, so `seed=0,1` would have the second job
    refuse the folder after the first trained, or with `overwrite=true` delete its record.
    The jobs are Hydra's own expansion of the overrides (its basic sweeper's)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from harness.experiments.job import prepare_job
    from harness.experiments.run_config import RunConfig, compose

    job_args = [o for o in overrides if o not in ("-m", "--multirun") and not o.startswith(("hydra.", "hydra/"))]
    try:
        (jobs,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(job_args), None)
    except HydraException as e:
        raise PacerUserError(str(e).strip().splitlines()[0]) from None
    folders: dict[Path, list[dict[str, str]]] = {}
    experiment = "default"
    for number, job in enumerate(jobs):
        try:
            cfg = OmegaConf.to_container(compose(job), resolve=True)
            prepare_job(cfg, create_run_dir=False)  # every job's input, before the first one trains
        except PacerUserError as e:
            raise PacerUserError(f"pacer run -m: job {number} ({' '.join(job)}): {e}") from None
        experiment = str(cfg["experiment"])
        folders.setdefault(RunConfig.from_mapping(cfg).run_dir, []).append(dict(o.split("=", 1) for o in job))
    for folder, same in folders.items():
        if len(same) > 1:
            keys = sorted({key.lstrip("+~") for job in same for key in job if any(job.get(key) != other.get(key) for other in same)})
            raise PacerUserError(f"pacer run -m: {len(same)} jobs would share the run folder {folder} (they differ in {', '.join(keys)}, which the folder does not name): "
                                 f"name it, e.g. experiment='{experiment}_${{{keys[0]}}}', or use pacer sweep")
    return list(folders)


def _multirun_exit_code(folders: Sequence[Path]) -> int:
    """0 when every job's run finished (reached, budget, complete, step cap, diverged); else 1,
    with a line per unfinished run (an error, a preemption that was not requeued, a lost job)."""
    from harness.core.store import TERMINAL_STATUSES, RunDir

    unfinished = []
    for folder in folders:
        record = RunDir(folder).read_run()
        status = record.get("status") if record else "no record"
        if status not in TERMINAL_STATUSES or status == "error":
            unfinished.append(f"{folder}: {status}")
    for line in unfinished:
        print(f"pacer: unfinished run {line}", file=sys.stderr)
    return 1 if unfinished else 0


def _hydra_multirun(overrides: Sequence[str]) -> None:
    """Hydra's multirun of `run_job`. Under Hydra's submitit launchers a job stopped by
    SIGUSR2/SIGTERM saves its checkpoint, then hands over to submitit's handler, which requeues
    it; the requeued job finds its own preempted run (same config) and resumes it."""
    import hydra
    from omegaconf import OmegaConf

    from harness.experiments.job import run_job
    from harness.experiments.launchers import quiet_sacct_warnings, requeue_through_submitit
    from harness.plugins.workloads import CONFIG_DIR

    quiet_sacct_warnings()  # hydra/launcher=submitit_slurm polls sacct, absent without accounting

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
    def task(cfg) -> None:
        plain = OmegaConf.to_container(cfg, resolve=True)
        record = run_job(plain | {"resume": plain["resume"] or _own_preempted_run(plain)})
        print(summary_line(record))
        if record["status"] == "preempted":
            requeue_through_submitit()

    sys.argv = ["pacer", *overrides]
    task()


def _own_preempted_run(cfg: Mapping[str, object]) -> bool:
    """True when the config's run folder holds a preempted run of this very config: a job of a
    multirun that its launcher requeued."""
    from harness.core.store import RunDir, config_hash
    from harness.experiments.manifest import written_by
    from harness.experiments.run_config import SWEEP_ONLY_KEYS, RunConfig

    record = RunDir(RunConfig.from_mapping(cfg).run_dir).read_run()
    own = config_hash({k: v for k, v in cfg.items() if k not in SWEEP_ONLY_KEYS})
    return record is not None and record.get("status") == "preempted" and written_by(record, own)


def calibrate_command(args: Sequence[str]) -> int:
    from harness.experiments.calibrate import calibrate_command as command

    return command(args)


def score_command(args: Sequence[str]) -> int:
    from harness.scoring.score_cli import score_command as command

    return command(args)


def compare_command(args: Sequence[str]) -> int:
    from harness.scoring.compare import compare_command as command

    return command(args)


def report_command(args: Sequence[str]) -> int:
    from harness.scoring.score_cli import report_command as command

    return command(args)


def import_algoperf_command(args: Sequence[str]) -> int:
    from harness.scoring.algoperf_import import import_command

    return import_command(args)


def sweep_command(args: Sequence[str]) -> int:
    from harness.experiments.sweep import sweep_command as sweep

    return sweep(args)


def data_command(args: Sequence[str]) -> int:
    from harness.plugins.data_converters import convert_command

    return convert_command(args)


def status_command(args: Sequence[str]) -> int:
    from harness.experiments.sweep_status import status_command as status

    return status(args)


OVERRIDE_VERBS = ("run", "sweep", "status", "calibrate")
"""Verbs whose arguments are key=value overrides (the others parse options with argparse)."""
VERBS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_command,
    "score": score_command,
    "compare": compare_command,
    "report": report_command,
    "import-algoperf": import_algoperf_command,
    "sweep": sweep_command,
    "status": status_command,
    "calibrate": calibrate_command,
    "data": data_command,
}


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """A warning as the CLI's one line, without Python's source line (the message names the culprit)."""
    return f"pacer: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _warning_line
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"pacer: error: unknown verb {verb!r} (valid: {', '.join(VERBS)})", file=sys.stderr)
        return 2
    if verb in OVERRIDE_VERBS and any(a in ("-h", "--help") for a in rest):
        print(USAGE)  # these verbs take Hydra overrides, which have no options of their own
        return 0
    try:
        return VERBS[verb](rest)
    except PacerUserError as e:
        print(f"pacer: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
