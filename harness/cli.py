"""`pacer VERB [arguments]`: the command-line entry point, and the one place where arguments are read.

Each verb is a function taking the remaining arguments and returning an exit code: it reads them,
with every option and default, into typed values (argparse for the option verbs score, report,
import-algoperf and data; `key=value` for status and for run, sweep and calibrate, which pass on
what is not theirs as Hydra overrides) and calls one function of its wing with them; the wings
never see argv. Bad input anywhere surfaces as one line `pacer: error: ...` and exit code 2, before any
training. Each verb imports its wing when it runs: the verbs that train nothing (`score`,
`report`, `status`, `import-algoperf`) and `--help` never load torch or Hydra (importing torch
alone takes ~3 s; tests/test_cli.py checks)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import CONFIG_DIR
from harness.core.checks import folder_argument, parse_options
from harness.core.errors import PacerUserError

if TYPE_CHECKING:
    from harness.scoring.rules import ScoringRules

PREEMPTED_EXIT_CODE = 3
BROKEN_PIPE_EXIT_CODE = 141
"""128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe."""

USAGE = """usage: pacer VERB [key=value ...]

verbs:
  run     one benchmark run, e.g. pacer run workload=mnist1d_mlp submission=nadamw seed=0 hparams.learning_rate=3e-3
          (devices=N: N DDP processes through torchrun, e.g. pacer run workload=imagenet_resnet50 device=cuda devices=8)
          (-m/--multirun: a Hydra multirun, e.g. with hydra/launcher=submitit_slurm)
  score   scores of results trees, e.g. pacer score results [--compat algoperf] [--format json] [--reference adamw] [--ruleset self]
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
    contention = record.get("contention") or {}
    if contention.get("contended"):
        reached += f"; flagged contended ({'; '.join(contention['reasons'])}): its time is not comparable"
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


def score_command(args: Sequence[str]) -> int:
    """`pacer score ROOT [ROOT...] [--format table|json] [--out DIR] ...`"""
    parser = argparse.ArgumentParser(prog="pacer score", description="Score results trees (performance profiles, benchmark scores).")
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--out", type=folder_argument, default=None, help="folder for times/scores CSV and Parquet (default: ROOT/scores)")
    add_scoring_arguments(parser)
    opts = parse_options(parser, args)
    from harness.scoring.score_cli import score

    return score(opts.roots, scoring_rules(opts), compat=opts.compat, allow_mixed=opts.allow_mixed, cache=not opts.no_cache, out=opts.out, output_format=opts.format,
                 ruleset=opts.ruleset)


def compare_command(args: Sequence[str]) -> int:
    """`pacer compare ROOT [ROOT...] X Y [--seed S] [--format table|json] [--ruleset R] [--allow-mixed]`"""
    from harness.scoring.compare import compare
    from harness.scoring.rules import RULESETS

    parser = argparse.ArgumentParser(prog="pacer compare", description="Is submission X faster than Y? Ratios t_Y / t_X with intervals and p-values.")
    parser.add_argument("roots", type=Path, nargs="+", metavar="ROOT")
    parser.add_argument("x", metavar="X")
    parser.add_argument("y", metavar="Y")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sign arrangements (over 16 pairs)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--ruleset", choices=list(RULESETS), default=None, help="the ruleset to compare when the roots hold several")
    parser.add_argument("--allow-mixed", action="store_true", help="compare runs from different hardware fingerprints, clocks or targets")
    opts = parse_options(parser, args)
    return compare(opts.roots, opts.x, opts.y, ruleset=opts.ruleset, seed=opts.seed, allow_mixed=opts.allow_mixed, output_format=opts.format)


def report_command(args: Sequence[str]) -> int:
    """`pacer report ROOT [ROOT...] --out DIR [--log-x] ...`"""
    parser = argparse.ArgumentParser(prog="pacer report", description="Write the HTML report and Markdown leaderboard.")
    parser.add_argument("roots", type=Path, nargs="+")
    parser.add_argument("--out", type=folder_argument, required=True)
    parser.add_argument("--log-x", action="store_true", help="log-scaled tau axis in the performance profile")
    add_scoring_arguments(parser)
    opts = parse_options(parser, args)
    from harness.scoring.score_cli import report

    return report(opts.roots, scoring_rules(opts), compat=opts.compat, allow_mixed=opts.allow_mixed, cache=not opts.no_cache, out=opts.out, log_x=opts.log_x,
                  ruleset=opts.ruleset)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `pacer score` and `pacer report` share: which rules, which runs, the cache."""
    from harness.scoring.rules import RULESETS

    parser.add_argument("--ruleset", choices=list(RULESETS), default=None, help="only the runs of this ruleset (score: needed when the roots hold several)")
    parser.add_argument("--compat", choices=["algoperf"], default=None, help="reproduce AlgoPerf's own scoring code")
    parser.add_argument("--reference", default=None, help="submission whose times are the ratio denominators (and the speedup baseline, adamw without it)")
    parser.add_argument("--allow-mixed", action="store_true", help="score runs from different hardware fingerprints or targets together")
    parser.add_argument("--held-out", default=None, help="comma-separated held-out variant workloads, or 'v0.5' for AlgoPerf's draw; turns the held-out rule on")
    parser.add_argument("--no-cutoff", action="store_true", help="do not turn times above 4x the fastest into misses")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for the intervals (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the Parquet cache beside the results")


def scoring_rules(opts: argparse.Namespace) -> ScoringRules:
    """The `ScoringRules` that `add_scoring_arguments`' options ask for. Raises PacerUserError for
    unknown AlgoPerf targets in `--held-out` or a negative `--bootstrap`."""
    from harness.scoring.algoperf_import import algoperf_targets
    from harness.scoring.rules import ScoringRules

    held_out: tuple[str, ...] = ()
    if opts.held_out:
        held_out = tuple(algoperf_targets(opts.held_out)["held_out"]) if opts.held_out.startswith("v") and opts.held_out[1:2].isdigit() else tuple(w for w in opts.held_out.split(",") if w)
    return ScoringRules(cutoff=None if opts.no_cutoff else 4.0, held_out=held_out, held_out_rule=bool(held_out), reference=opts.reference,
                        bootstrap=opts.bootstrap, seed=opts.seed)


def import_algoperf_command(args: Sequence[str]) -> int:
    """`pacer import-algoperf DIR --out OUT --targets v0.5|v0.6|v1.0 --ruleset external|self [--overwrite]`."""
    parser = argparse.ArgumentParser(prog="pacer import-algoperf", description="Import AlgoPerf logs as Pacer run records.")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--out", type=folder_argument, required=True)
    parser.add_argument("--targets", default="v0.5")
    parser.add_argument("--ruleset", default="external")
    parser.add_argument("--overwrite", action="store_true", help="replace runs already in OUT (their record files; other files there are kept)")
    opts = parse_options(parser, args)
    from harness.scoring.algoperf_import import import_logs

    return import_logs(opts.dir, opts.out, opts.targets, opts.ruleset, overwrite=opts.overwrite)


def data_command(args: Sequence[str]) -> int:
    """`pacer data convert WORKLOAD SOURCE DEST`; `pacer data --help` prints its help."""
    from harness.plugins.data_converters import convert, converter_names

    parser = argparse.ArgumentParser(prog="pacer data convert", description="Convert AlgoPerf's data layout of a workload into the files Pacer reads.")
    parser.add_argument("workload", help=f"one of: {', '.join(converter_names())}")
    parser.add_argument("source", help="the folder AlgoPerf's dataset_setup.py wrote")
    parser.add_argument("dest", help="the folder to write (then pass it as workload.data_dir=)")
    if list(args[:1]) in (["-h"], ["--help"]):
        parser.print_help()
        return 0
    if not args or args[0] != "convert":
        raise PacerUserError("usage: pacer data convert WORKLOAD SOURCE DEST (see pacer data convert --help)")
    opts = parse_options(parser, args[1:])
    return convert(opts.workload, opts.source, opts.dest)


@dataclass(frozen=True)
class SweepArgs:
    """`pacer sweep`'s arguments: the grid's axes apart from the other overrides (normalized)."""

    overrides: list[str]
    submissions: list[str]
    workloads: list[str] | None
    """None: the suite's workloads."""
    dry: bool


GRID_KEYS = ("submission", "workload")


def parse_sweep_args(args: Sequence[str]) -> SweepArgs:
    """Split `submission=[a,b]` and `workload=[x,y]` (the grid axes) from the other overrides.
    Raises PacerUserError for a name listed twice, an unknown submission or a bad override."""
    from harness.experiments.run_config import normalize_overrides

    dry = "--dry" in args
    axes: dict[str, list[str]] = {}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in GRID_KEYS:
            axes[key] = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
            if twice := sorted({v for v in axes[key] if axes[key].count(v) > 1}):
                raise PacerUserError(f"{key}={value}: {', '.join(twice)} listed twice (its cells would share run folders)")
        elif arg != "--dry":
            overrides.append(arg)
    normalize_overrides([f"submission={s}" for s in axes.get("submission", [])])  # unknown names: one line listing the valid
    overrides = normalize_overrides(overrides)
    return SweepArgs(overrides, axes.get("submission") or ["nadamw"], axes.get("workload"), dry)


def sweep_command(args: Sequence[str]) -> int:
    parsed = parse_sweep_args(args)
    from harness.experiments.sweep import sweep

    return sweep(parsed.overrides, parsed.submissions, parsed.workloads, parsed.dry)


def status_command(args: Sequence[str]) -> int:
    """`pacer status experiment=NAME [results_root=DIR] [--wait]`."""
    values = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = [a for a in args if a != "--wait" and not ("=" in a and a.split("=", 1)[0] in ("experiment", "results_root"))]
    if unknown or "experiment" not in values:
        raise PacerUserError(f"usage: pacer status experiment=NAME [results_root=DIR] [--wait] (got {' '.join(unknown) or 'no experiment'})")
    from harness.experiments.sweep_status import status

    return status(values["experiment"], values.get("results_root"), wait="--wait" in args)


REFERENCE_ALGORITHMS = ("adamw", "nadamw", "sgd_nesterov", "momentum")
"""AlgoPerf's target-setting algorithms: what `pacer calibrate` tunes unless `algorithms=` says otherwise."""


@dataclass(frozen=True)
class CalibrateFlags:
    """`pacer calibrate`'s own `key=value` flags, with their defaults (harness.experiments.calibrate says what each does)."""

    trials: int = 8
    reruns: int = 5
    steps: int | None = None
    eval_every: int | None = None
    workers: int = 1
    algorithms: tuple[str, ...] = REFERENCE_ALGORITHMS
    write: bool = True
    reuse: bool = True
    retime: bool = False


CALIBRATE_INT_FLAGS = ("trials", "reruns", "steps", "eval_every", "workers")
CALIBRATE_BOOL_FLAGS = ("write", "reuse", "retime")


def parse_calibrate_flags(args: Sequence[str]) -> tuple[CalibrateFlags, list[str]]:
    """Split `key=value` arguments into calibrate's own flags (checked) and config overrides.
    Raises PacerUserError naming a flag that is not a whole number >= 1, true or false, or
    known submissions."""
    flags: dict[str, object] = {}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in (*CALIBRATE_INT_FLAGS, *CALIBRATE_BOOL_FLAGS, "algorithms"):
            overrides.append(arg)
        elif key in CALIBRATE_INT_FLAGS:
            if not value.isdigit() or int(value) < 1:
                raise PacerUserError(f"{key}={value!r} must be an integer >= 1")
            flags[key] = int(value)
        elif key in CALIBRATE_BOOL_FLAGS:
            if value not in ("true", "false"):
                raise PacerUserError(f"{key}={value!r} must be true or false")
            flags[key] = value == "true"
        else:
            flags[key] = tuple(a for a in value.split(",") if a)
    algorithms = flags.get("algorithms", REFERENCE_ALGORITHMS)
    unknown = [a for a in algorithms if not (CONFIG_DIR / "submission" / f"{a}.yaml").exists()]
    if unknown or not algorithms:
        raise PacerUserError(f"algorithms: unknown submission(s) {', '.join(unknown) or '(none given)'} (reference: {', '.join(REFERENCE_ALGORITHMS)})")
    return CalibrateFlags(**flags), overrides


def calibrate_command(args: Sequence[str]) -> int:
    """`pacer calibrate workload=NAME [variant=V] [trials=8 reruns=5 workers=1 steps=.. eval_every=..] [overrides]`."""
    flags, overrides = parse_calibrate_flags(args)
    from harness.experiments.calibrate import calibrate_workload

    return calibrate_workload(overrides, trials=flags.trials, reruns=flags.reruns, steps=flags.steps, eval_every=flags.eval_every, workers=flags.workers,
                              algorithms=flags.algorithms, write=flags.write, reuse=flags.reuse, retime_only=flags.retime)


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
    try:
        return run_verb(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # the reader left (`pacer status | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush does not raise again
        return BROKEN_PIPE_EXIT_CODE


def run_verb(args: list[str]) -> int:
    """Dispatch `pacer VERB ARGS...`; a PacerUserError is one `pacer: error:` line and its exit code."""
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
