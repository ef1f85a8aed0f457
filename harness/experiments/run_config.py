"""One run's configuration: composed once from the command line, checked once, serialized once.

`compose(overrides)` is Hydra's composition of configs/config.yaml, as every verb that runs
something sees it (`pacer run`, `pacer sweep`, `pacer calibrate`). `RunConfig.from_mapping`
turns the composed config into a frozen, checked value: every setting that can be checked
without building the workload or importing the submission is checked here, with one line
naming the key (`PacerUserError`). Its `to_dict()` is the one serialization: the run record's
`config`, the sweep manifest's cells, submitit's pickled job argument and torchrun's
config file all carry it, and `from_mapping(to_dict())` gives the same value back.

The run's budget is worked out here and nowhere else (`RunConfig.budget`): the override, or
the workload's (its variant's) budget times the ruleset's multiplier."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness import CONFIG_DIR
from harness.core.checks import whole_number
from harness.core.errors import PacerUserError
from harness.core.store import check_inside, run_path
from harness.plugins.workloads import resolve_variant, workload_config, workload_names

SWEEP_ONLY_KEYS = ("suite", "launcher")
"""Root-config groups that only `pacer sweep` reads; a run's config leaves them out."""
FLAGS = ("resume", "overwrite", "stop_at_target", "quiet")
"""Keys that take true or false only: `overwrite=no` read by truthiness would delete a run."""


# --- composition ---------------------------------------------------------------------------


def config_groups() -> dict[str, list[str]]:
    """Config group name -> its options, from the folders under configs/."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")) for d in CONFIG_DIR.iterdir() if d.is_dir()}


def normalize_overrides(args: Sequence[str]) -> list[str]:
    """Check group choices early (one line listing the valid names) and let `hparams.x=v`
    add keys to the open `hparams` mapping."""
    from harness.plugins.submissions import file_submission_config, is_submission_file

    groups = config_groups()
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in groups:
            for choice in value.strip("[]").split(","):
                if key == "submission" and is_submission_file(choice):
                    file_submission_config(choice)  # a missing file: one line naming it
                elif choice and choice not in groups[key]:
                    raise PacerUserError(f"unknown {key} {choice!r} (valid: {', '.join(groups[key])}){_variant_hint(key, choice, groups[key])}")
        if sep and key.startswith("hparams."):
            arg = "+" + arg
        out.append(arg)
    return out


def submission_files(overrides: Sequence[str]) -> list[str]:
    """The AlgoPerf files given as `submission=path/to/file.py`."""
    from harness.plugins.submissions import is_submission_file

    return [value for key, _, value in (o.partition("=") for o in overrides) if key == "submission" and is_submission_file(value)]


def _variant_hint(group: str, choice: str, valid: Sequence[str]) -> str:
    """`; a variant is workload=B variant=V` when `choice` reads as a workload id B_V (what
    `pacer sweep` and the suites take)."""
    bases = [b for b in valid if group == "workload" and choice.startswith(f"{b}_")]
    return f"; for a variant: workload={bases[0]} variant={choice[len(bases[0]) + 1:]}" if bases else ""


def compose(overrides: Sequence[str]) -> DictConfig:
    """Compose configs/config.yaml with overrides through Hydra, as a single run sees it.

    `submission=path/to/submission.py` (an AlgoPerf file) is not a config-group choice: the
    submission group becomes that file's config (`harness.plugins.submissions.file_submission_config`).
    Raises PacerUserError (one line) for an override Hydra refuses or one that removes or adds
    a top-level key."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from harness.plugins.submissions import file_submission_config

    files = submission_files(overrides)
    overrides = [o for o in overrides if not (o.startswith("submission=") and o.partition("=")[2] in files)]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise PacerUserError(hydra_error_line(e)) from None
    if files:
        with open_dict(cfg):
            cfg.submission = file_submission_config(files[-1])
    root_keys = _root_keys(CONFIG_DIR)
    if removed := [key for key in root_keys if key not in cfg]:
        raise PacerUserError(f"~{removed[0]} removes a key every run reads: set it instead ({removed[0]}=VALUE)")
    if added := [key for key in cfg if key not in root_keys]:
        raise PacerUserError(f"+{added[0]} adds a key no run reads (a typo?); the top-level keys are {', '.join(root_keys)}")
    return cfg


@functools.cache
def _root_keys(config_dir: Path) -> list[str]:
    """The top-level keys of configs/config.yaml: its config groups and its own keys."""
    root = OmegaConf.load(config_dir / "config.yaml")
    groups = [next(iter(entry)) for entry in root.defaults if isinstance(entry, Mapping) and not next(iter(entry)).startswith("override")]
    return groups + [key for key in root if key not in ("defaults", "hydra")]


def hydra_error_line(error: Exception) -> str:
    """Hydra's error as one line: for an override of a key the config does not have, the key
    and the config's keys (Hydra's first line says only "Could not override"; the reason is
    in its cause)."""
    first = str(error).strip().splitlines()[0]
    override = getattr(error, "override", None)  # Hydra's OverrideParseException names the argument
    if first.startswith("LexerNoViableAltException: "):
        argument = override or first.partition(": ")[2]
        if not argument.isascii():
            return f"cannot read the argument {argument!r}: Hydra's override grammar reads only ASCII unquoted; quote the value: {_quoted(argument)}"
        return f"cannot read the argument {argument!r}: arguments are key=value overrides (options and verbs: pacer --help)"
    if override:
        return f"cannot read the argument {override!r}: {first} (Hydra's override grammar: quote a value with brackets, = or spaces: {_quoted(override)})"
    missing = next((line.strip() for line in str(error.__cause__ or "").splitlines() if "is not in struct" in line), None)
    if not (first.startswith("Could not override") and missing):
        return first
    if "." in first.split("'")[1]:  # a key inside a group: the group's keys are its config's
        return f"{first} {missing}"
    keys = [k for k in OmegaConf.load(CONFIG_DIR / "config.yaml") if k not in ("defaults", "hydra")]
    return f"{first} {missing} (valid top-level keys: {', '.join(keys)}, and the config groups' keys)"


def _quoted(argument: str) -> str:
    """`key='value'`, as the shell argument to type (the quotes are Hydra's)."""
    key, _, value = argument.partition("=")
    return f"\"{key}='{value}'\""


# --- the checked configuration ---------------------------------------------------------------


def split_workload_id(workload_id: str) -> tuple[str, str | None]:
    """The one parser of workload ids: `mnist1d_mlp_gelu` -> (`mnist1d_mlp`, `gelu`). Raises
    PacerUserError listing the valid names when no workload or variant has that id."""
    if workload_id in workload_names():
        return workload_id, None
    config = workload_config(workload_id)  # raises, listing the valid names, when no base matches
    base = str(config["name"])
    variant = workload_id[len(base) + 1:]
    resolve_variant(config, variant)
    return base, variant


@dataclass(frozen=True)
class Ruleset:
    name: str
    """`external` or `self` (configs/ruleset/)."""
    budget_multiplier: float
    """Self-tuning runs get 1.5 x the workload's budget (AlgoPerf's rule)."""

    @classmethod
    def from_config(cls, ruleset: Mapping[str, object] | str) -> Ruleset:
        if not isinstance(ruleset, Mapping):
            return cls(str(ruleset), 1.0)
        multiplier = ruleset.get("budget_multiplier", 1.0)
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not 0 < multiplier < math.inf:
            raise PacerUserError(f"ruleset.budget_multiplier={multiplier!r} must be a positive finite number")
        return cls(str(ruleset["name"]), float(multiplier))


@dataclass(frozen=True)
class RunConfig:
    """A run's configuration, checked on construction (`from_mapping`)."""

    experiment: str
    ruleset: Ruleset
    submission_name: str
    workload: dict[str, object]
    """The workload's constructor arguments, its variant's values applied."""
    study: int
    trial: int
    seed: int
    hparams: dict[str, object]
    """Overrides of the submission's point (checked against its search space when it is loaded)."""
    results_root: str
    device: str
    devices: int
    threads: int | None
    max_steps: int | None
    eval_every_steps: int | None
    max_runtime_sec: float | None
    stop_at_target: bool
    checkpoint_every_sec: float | None
    """Wall time between periodic checkpoints; None: only on a stop signal."""
    resume: bool
    overwrite: bool
    quiet: bool
    plain: dict[str, object]
    """The composed config as plain data, sweep-only groups left out: what `to_dict` gives."""

    @classmethod
    def from_mapping(cls, cfg: DictConfig | Mapping[str, object]) -> RunConfig:
        """Check a composed config (or a `to_dict()`); raise PacerUserError naming the first bad key."""
        plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        plain = {k: v for k, v in plain.items() if k not in SWEEP_ONLY_KEYS}
        study, trial = _count(plain, "study", minimum=0), _count(plain, "trial", minimum=0)
        for key in FLAGS:
            if key in plain and not isinstance(plain[key], bool):
                raise PacerUserError(f"{key}={plain[key]!r} must be true or false")
        if plain.get("resume") and plain.get("overwrite"):
            raise PacerUserError("resume=true and overwrite=true contradict each other: resume continues the run in its folder, overwrite deletes it; pass one")
        if not str(plain["results_root"] or "").strip():
            raise PacerUserError("results_root='' names no folder: give one (the default is results)")
        ruleset = Ruleset.from_config(plain["ruleset"])
        workload = resolve_variant(plain["workload"], plain.get("variant"))
        # A name that leaves the results root is refused before anything else is read.
        _checked_run_path(str(plain["results_root"]), str(plain["experiment"]), ruleset.name, str(plain["submission"]["name"]), str(workload["name"]), study, trial)
        hparams = plain.get("hparams") or {}
        if not isinstance(hparams, Mapping):
            raise PacerUserError(f"hparams={hparams!r} must be a mapping of hyperparameters: set one with hparams.NAME=VALUE")
        check_no_hand_tuning(ruleset.name, hparams)
        return cls(
            experiment=str(plain["experiment"]),
            ruleset=ruleset,
            submission_name=str(plain["submission"]["name"]),
            workload=workload,
            study=study,
            trial=trial,
            seed=_seed(plain),
            hparams=dict(hparams),
            results_root=str(plain["results_root"]),
            device=str(plain.get("device", "cpu")),
            devices=_count(plain, "devices", minimum=1, optional=True) or 1,
            threads=_count(plain, "threads", minimum=1, optional=True),
            max_steps=_count(plain, "max_steps", minimum=1, optional=True),
            eval_every_steps=_count(plain, "eval_every_steps", minimum=1, optional=True),
            max_runtime_sec=_positive_seconds(plain, "max_runtime_sec"),
            stop_at_target=bool(plain.get("stop_at_target", True)),
            checkpoint_every_sec=_checkpoint_period(plain),
            resume=bool(plain.get("resume", False)),
            overwrite=bool(plain.get("overwrite", False)),
            quiet=bool(plain.get("quiet", False)),
            plain=plain,
        )

    @property
    def workload_name(self) -> str:
        """The workload id: the base name, or `<base>_<variant>`."""
        return str(self.workload["name"])

    @property
    def budget(self) -> float:
        """The run's budget in the workload's clock unit: `max_runtime_sec` when set, else the
        workload's (its variant's) budget times the ruleset's multiplier."""
        if self.max_runtime_sec is not None:
            return self.max_runtime_sec
        return float(self.workload["max_runtime_sec"]) * self.ruleset.budget_multiplier

    @property
    def run_dir(self) -> Path:
        """results root / experiment / ruleset / submission / workload / study / trial.

        Raises PacerUserError when a name is not one folder name (`store.safe_component`) or the
        folder resolves, through a symbolic link, outside the results root (`store.check_inside`)."""
        return _checked_run_path(self.results_root, self.experiment, self.ruleset.name, self.submission_name, self.workload_name, self.study, self.trial)

    def to_dict(self) -> dict[str, object]:
        """The configuration as plain data (JSON-ready); `from_mapping` reads it back."""
        return dict(self.plain)


def _checked_run_path(results_root: str, *names: str | int) -> Path:
    path = run_path(results_root, *names)
    check_inside(results_root, path)
    return path


def check_no_hand_tuning(ruleset: str, overrides: Mapping[str, object]) -> None:
    """Under the self-tuning ruleset a submission runs its own default point: refuse `hparams.*`
    (a hand-set rate would be scored as self-tuned)."""
    if overrides and ruleset == "self":
        raise PacerUserError(f"hparams.{next(iter(overrides))}: under the self-tuning ruleset a submission runs its own default point, not one set per run; "
                             "change the default in its config, or tune it with ruleset=external")


def _count(cfg: Mapping[str, object], key: str, *, minimum: int, optional: bool = False) -> int | None:
    value = cfg.get(key)
    if value is None and optional:
        return None
    try:
        return whole_number(key, value, minimum)
    except ValueError as e:
        raise PacerUserError(str(e)) from None


def _seed(cfg: Mapping[str, object]) -> int:
    """`seed`: a whole number that torch's generators take (0 .. 2**63 - 1)."""
    seed = _count(cfg, "seed", minimum=0)
    assert seed is not None  # not optional
    if seed >= 2**63:
        raise PacerUserError(f"seed={seed} must be below 2**63 (torch's generators take a signed 64-bit seed)")
    return seed


def _checkpoint_period(cfg: Mapping[str, object]) -> float | None:
    """`checkpoint_every_sec`: seconds between periodic checkpoints; 0 or null turns them off."""
    value = cfg.get("checkpoint_every_sec")
    if value in (None, 0):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == float("inf"):
        raise PacerUserError(f"checkpoint_every_sec={value!r} must be a positive number of seconds, or 0/null for no periodic checkpoints")
    return float(value)


def _positive_seconds(cfg: Mapping[str, object], key: str) -> float | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise PacerUserError(f"{key}={value!r} must be a positive finite number of seconds")
    return float(value)
