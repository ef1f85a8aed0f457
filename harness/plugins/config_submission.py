"""Config-only submissions: a YAML that names a torch optimizer becomes AlgoPerf's functions.

A `configs/submission/<name>.yaml` with an `optimizer:` block (instead of `module:`) is one:

    optimizer:                        # the class and its fixed keyword arguments
      _target_: pytorch_optimizer.Lion  # torch.optim.X, pytorch_optimizer.X or your.module.X
      weight_decouple: true
    schedule: warmup_cosine           # constant | warmup_cosine | warmup_linear | none
    hyperparameters:                  # search-space name -> optimizer keyword argument
      learning_rate: lr
      one_minus_beta1: 1 - betas[0]   # `1 - ` maps x to 1 - x; `[i]` sets one element of a tuple
      beta2: betas[1]
    search_space: {...}               # inline, or a JSON file under submissions/
    default: {...}                    # the self-tuning point
    checkpoint_classes: [...]         # classes the optimizer keeps in its state (see harness.plugins.submissions)

Every search-space name is either mapped to a keyword argument or one that the shared kit reads
itself (`submission_kit.HARNESS_HYPERPARAMETERS`: schedule, label smoothing, dropout, clipping);
anything else is a typo and raises, naming the file and the key. `schedule: none` is for
optimizers that schedule themselves. Batch size: the workload's reference batch size.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from harness.core.errors import PacerUserError
from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Workload
from harness.plugins import submission_kit
from harness.plugins.hparams import SearchSpace, Value

SCHEDULE_NONE = "none"
CONFIG_KEYS = ("name", "optimizer", "schedule", "hyperparameters", "search_space", "default", "provenance", "checkpoint_classes")
_KWARG_TARGET = re.compile(r"^\s*(1\s*-\s*)?([A-Za-z_]\w*)\s*(?:\[(\d+)\])?\s*$")


@dataclass(frozen=True)
class KwargTarget:
    """Where one hyperparameter goes: keyword `name`, element `index` of it if set, as 1 - x if `one_minus`."""

    name: str
    index: int | None
    one_minus: bool

    def value(self, x: Value) -> Value:
        return 1.0 - float(x) if self.one_minus else x


class ConfigSubmission:
    """The submission functions of one config-only YAML (see the module docstring)."""

    def __init__(self, optimizer_class: type[torch.optim.Optimizer], fixed_kwargs: Mapping[str, object], schedule: str, mapping: Mapping[str, KwargTarget]):
        self.optimizer_class, self.fixed_kwargs = optimizer_class, dict(fixed_kwargs)
        self.schedule, self.mapping = schedule, dict(mapping)

    def optimizer_kwargs(self, hyperparameters: Mapping[str, Value]) -> dict[str, object]:
        """The fixed keyword arguments with the mapped hyperparameters applied."""
        kwargs = dict(self.fixed_kwargs)
        for hparam, target in self.mapping.items():
            value = target.value(hyperparameters[hparam])
            if target.index is None:
                kwargs[target.name] = value
            else:
                elements = list(kwargs.get(target.name, _default_of(self.optimizer_class, target.name)))
                elements[target.index] = value
                kwargs[target.name] = tuple(elements)
        return kwargs

    def get_batch_size(self, workload_name: str) -> int:
        return submission_kit.reference_batch_size(workload_name)

    def init_optimizer_state(self, workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
        optimizer = self.optimizer_class(model_params.parameters(), **self.optimizer_kwargs(hyperparameters))
        state: OptimizerState = {"optimizer": optimizer}
        if self.schedule != SCHEDULE_NONE:
            state["scheduler"] = submission_kit.SCHEDULES[self.schedule](optimizer, hyperparameters, workload.step_hint)
        return state

    update_params = staticmethod(submission_kit.optimizer_update)
    data_selection = staticmethod(submission_kit.next_batch)


def build_config_submission(cfg: Mapping[str, object], space: SearchSpace, default: Mapping[str, Value], where: str) -> ConfigSubmission:
    """Check a config-only submission against its optimizer class and search space; raise
    `PacerUserError` naming `where` and the key at the first problem."""
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise PacerUserError(f"{where}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(CONFIG_KEYS)})")
    block = cfg.get("optimizer")
    if not isinstance(block, Mapping) or "_target_" not in block:
        raise PacerUserError(f"{where}: optimizer: needs `_target_:` naming a torch.optim.Optimizer class")
    optimizer_class = _import_optimizer_class(str(block["_target_"]), where)
    accepted = _keyword_arguments(optimizer_class)
    fixed = {str(k): v for k, v in block.items() if k != "_target_"}
    for key in fixed:
        _check_keyword(key, accepted, optimizer_class, f"{where}: optimizer.{key}")
    schedule = str(cfg.get("schedule", "constant"))
    choices = (*submission_kit.SCHEDULES, SCHEDULE_NONE)
    if schedule not in choices:
        raise PacerUserError(f"{where}: schedule: {schedule!r} is not one of {', '.join(choices)}")
    mapping = _parse_mapping(cfg.get("hyperparameters") or {}, space, accepted, optimizer_class, where)
    submission = ConfigSubmission(optimizer_class, fixed, schedule, mapping)
    _try_construct(submission, default, where)
    return submission


def import_name(target: str, what: str) -> object:
    """What the dotted path `target` names (`module.Class`).

    Raises:
        PacerUserError: naming `what`, when the module or the name in it cannot be imported.
    """
    module_name, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name) if module_name else None
    except (ImportError, AttributeError) as e:
        raise PacerUserError(f"{what}: cannot import {target!r} ({e})") from None


def _import_optimizer_class(target: str, where: str) -> type[torch.optim.Optimizer]:
    found = import_name(target, f"{where}: optimizer._target_")
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise PacerUserError(f"{where}: optimizer._target_: {target} is not a torch.optim.Optimizer subclass")
    return found


def _keyword_arguments(optimizer_class: type) -> dict[str, inspect.Parameter]:
    """Named constructor arguments; a catch-all `**kwargs` is left out so that typos still raise."""
    parameters = list(inspect.signature(optimizer_class.__init__).parameters.values())[2:]  # self, params
    return {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _check_keyword(key: str, accepted: Mapping[str, inspect.Parameter], optimizer_class: type, what: str) -> None:
    if key not in accepted:
        raise PacerUserError(f"{what}: {optimizer_class.__name__} takes no argument {key!r} (valid: {', '.join(accepted)})")


def _parse_mapping(raw: object, space: SearchSpace, accepted: Mapping[str, inspect.Parameter], optimizer_class: type, where: str) -> dict[str, KwargTarget]:
    if not isinstance(raw, Mapping):
        raise PacerUserError(f"{where}: hyperparameters: expected a mapping of search-space name -> optimizer argument")
    mapping = {}
    for hparam, text in raw.items():
        what = f"{where}: hyperparameters.{hparam}"
        if hparam not in space.params:
            raise PacerUserError(f"{what}: not in the search space (valid: {', '.join(space.names())})")
        match = _KWARG_TARGET.match(str(text))
        if match is None:
            raise PacerUserError(f"{what}: {text!r} is not `arg`, `arg[i]` or `1 - arg[i]`")
        one_minus, name, index = match.groups()
        _check_keyword(name, accepted, optimizer_class, what)
        mapping[str(hparam)] = KwargTarget(name, None if index is None else int(index), bool(one_minus))
    for name in space.names():
        if name not in mapping and name not in submission_kit.HARNESS_HYPERPARAMETERS:
            raise PacerUserError(
                f"{where}: search_space.{name}: not mapped to an optimizer argument under `hyperparameters:` "
                f"and not one the harness reads ({', '.join(submission_kit.HARNESS_HYPERPARAMETERS)})")
    return mapping


def _default_of(optimizer_class: type, name: str) -> object:
    return _keyword_arguments(optimizer_class)[name].default


def _try_construct(submission: ConfigSubmission, default: Mapping[str, Value], where: str) -> None:
    """Build the optimizer once on a dummy parameter, so that bad values fail before any run."""
    point = {name: value for name, value in default.items() if name in submission.mapping}
    if set(point) != set(submission.mapping):
        return  # the default misses names; `hparams.resolve` reports that with the right wording
    try:
        submission.optimizer_class([torch.nn.Parameter(torch.zeros(2, 2))], **submission.optimizer_kwargs(point))
    except (TypeError, ValueError, IndexError) as e:
        raise PacerUserError(f"{where}: optimizer {submission.optimizer_class.__name__} rejects the default point ({e})") from None
