"""From a workload config to a `Workload`: variant selection, checks, instantiation.

Workloads are discovered by convention: every `configs/workload/<name>.yaml` is one, and its
`_target_` names the class in `workloads/<module>.py`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import hydra.utils
from omegaconf import OmegaConf

from harness import CONFIG_DIR
from harness.core.errors import PacerUserError
from harness.core.spec import Workload

NON_CONSTRUCTOR_KEYS = ("variants", "calibration", "_target_", "by_rules")


def workload_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "workload").glob("*.yaml"))


def workload_config(name: str) -> dict[str, object]:
    """The base workload's config as plain data (for a variant id, its base workload's)."""
    path = CONFIG_DIR / "workload" / f"{name}.yaml"
    if not path.exists():
        base = next((n for n in workload_names() if name.startswith(n + "_")), None)
        if base is None:
            raise PacerUserError(f"unknown workload {name!r} (valid: {', '.join(workload_names())})")
        path = CONFIG_DIR / "workload" / f"{base}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def resolve_variant(config: Mapping[str, object], variant: str | None) -> dict[str, object]:
    """The constructor arguments of the workload, with a variant's overrides applied."""
    cfg = dict(config)
    variants = cfg.get("variants") or {}
    name = str(cfg["name"])
    chosen: Mapping[str, object] = {}
    if variant:
        if variant not in variants:
            raise PacerUserError(f"unknown variant {variant!r} of workload {name} (valid: {', '.join(sorted(variants)) or 'none'})")
        chosen = variants[variant]
        cfg.update({k: v for k, v in chosen.items() if k != "by_rules"})
        cfg["name"], cfg["base_name"], cfg["variant"] = f"{name}_{variant}", name, variant
    if "by_rules" in config:
        cfg.update(_rules_values(config, chosen, str(cfg.get("rules"))))
    return cfg


def _rules_values(config: Mapping[str, object], variant: Mapping[str, object], rules: str) -> dict[str, object]:
    """The targets, budget, eval period and step hint of AlgoPerf version `rules` (the
    config's `rules` key): the base workload's `by_rules[rules]`, then the variant's."""
    tables = config["by_rules"]
    if rules not in tables:
        raise PacerUserError(f"workload {config['name']}: unknown rules {rules!r} (valid: {', '.join(sorted(tables))})")
    return dict(tables[rules]) | dict((variant.get("by_rules") or {}).get(rules) or {})


def build_workload(config: Mapping[str, object], variant: str | None = None, device: str = "cpu") -> Workload:
    """Instantiate the workload class named by the config's `_target_`."""
    cfg = resolve_variant(config, variant)
    target = str(cfg["_target_"])
    try:
        cls = hydra.utils.get_class(target)
    except Exception:  # noqa: BLE001 - hydra wraps import errors in several types
        raise PacerUserError(f"workload {cfg['name']}: cannot import {target}") from None
    kwargs = {k: v for k, v in cfg.items() if k not in NON_CONSTRUCTOR_KEYS} | {"device": device}
    _check_arguments(cls, kwargs, str(cfg["name"]))
    try:
        workload = cls(**kwargs)
        workload.check_targets()
    except (TypeError, ValueError) as e:
        path = CONFIG_DIR / "workload" / f"{cfg.get('base_name') or cfg['name']}.yaml"
        raise PacerUserError(f"workload {cfg['name']}: {e} (config: {path})") from None
    return workload


def _check_arguments(cls: type, kwargs: Mapping[str, object], name: str) -> None:
    accepted: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted |= {p for p, param in inspect.signature(klass.__init__).parameters.items() if param.kind is param.KEYWORD_ONLY}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise PacerUserError(f"workload {name}: unknown setting(s) {', '.join(unknown)} (valid: {', '.join(sorted(accepted))})")


def suite_workloads(suite: str) -> list[str]:
    """The workload ids (variants included) that `configs/suite/<suite>.yaml` lists."""
    path = CONFIG_DIR / "suite" / f"{suite}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (CONFIG_DIR / "suite").glob("*.yaml"))
        raise PacerUserError(f"unknown suite {suite!r} (valid: {', '.join(valid)})")
    return list(OmegaConf.load(path)["workloads"])
