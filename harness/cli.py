"""`pacer VERB [overrides]`: the command-line entry point.

Each verb is a function taking the remaining arguments and returning an exit code. Bad input
anywhere surfaces as one line `pacer: error: ...` and exit code 2, before any training."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from harness.errors import PacerUserError
from harness.workloads import CONFIG_DIR

USAGE = """usage: pacer VERB [key=value ...]

verbs:
  run     one benchmark run, e.g. pacer run workload=mnist1d_mlp submission=nadamw seed=0 hparams.learning_rate=3e-3
          (-m/--multirun: a Hydra multirun, e.g. with hydra/launcher=submitit_slurm)
  calibrate  set a workload's targets by AlgoPerf's procedure, e.g. pacer calibrate workload=digits_cnn trials=8 reruns=5
          [variant=V steps=N eval_every=N algorithms=adamw,nadamw,sgd_nesterov,momentum write=false]
options:
  --quiet  plain progress lines instead of a progress bar
"""


def config_groups() -> dict[str, list[str]]:
    """Config group name -> its options, from the folders under configs/."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")) for d in CONFIG_DIR.iterdir() if d.is_dir()}


def normalize_overrides(args: Sequence[str]) -> list[str]:
    """Check group choices early (one line listing the valid names) and let `hparams.x=v`
    add keys to the open `hparams` mapping."""
    groups = config_groups()
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in groups:
            for choice in value.strip("[]").split(","):
                if choice and choice not in groups[key]:
                    raise PacerUserError(f"unknown {key} {choice!r} (valid: {', '.join(groups[key])})")
        if sep and key.startswith("hparams."):
            arg = "+" + arg
        out.append(arg)
    return out


def compose_config(overrides: Sequence[str]):
    """Compose configs/config.yaml with overrides through Hydra, as a single run sees it."""
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise PacerUserError(str(e).strip().splitlines()[0]) from None


def run_command(args: Sequence[str]) -> int:
    quiet = "--quiet" in args
    args = [a for a in args if a != "--quiet"] + (["quiet=true"] if quiet else [])
    overrides = normalize_overrides(args)
    if "-m" in overrides or "--multirun" in overrides:
        return _hydra_multirun(overrides)
    from harness.job import run_job

    record = run_job(compose_config(overrides))
    print(summary_line(record))
    return 0 if record["status"] != "error" else 1


def summary_line(record: dict[str, object]) -> str:
    ttt = record["time_to_target"]["validation"]
    steps = record["steps_to_target"]["validation"]
    reached = f"reached the target in {ttt:.1f} s ({steps} steps)" if ttt is not None else f"ended {record['status']}"
    path = "/".join(str(record[k]) for k in ("experiment", "ruleset", "submission", "workload"))
    return f"{record['submission']} on {record['workload']}: {reached}; record under {record['config']['results_root']}/{path}/study_{record['study']}/trial_{record['trial']}"


def _hydra_multirun(overrides: Sequence[str]) -> int:
    import hydra

    from harness.job import run_job

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
    def task(cfg) -> None:
        print(summary_line(run_job(cfg)))

    sys.argv = ["pacer", *overrides]
    task()
    return 0


def calibrate_command(args: Sequence[str]) -> int:
    from harness.calibrate import calibrate_command as command

    return command(args)


VERBS: dict[str, Callable[[Sequence[str]], int]] = {
    "run": run_command,
    "calibrate": calibrate_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        print(f"pacer: error: unknown verb {verb!r} (valid: {', '.join(VERBS)})", file=sys.stderr)
        return 2
    try:
        return VERBS[verb](rest)
    except PacerUserError as e:
        print(f"pacer: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
