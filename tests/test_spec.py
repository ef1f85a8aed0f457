"""The contract's small pieces."""

from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from harness.core.spec import MetricDirection, ParameterType, parameter_type


def test_metric_direction():
    assert MetricDirection.MAXIMIZE.reached(0.8, 0.8) and not MetricDirection.MAXIMIZE.reached(0.79, 0.8)
    assert MetricDirection.MINIMIZE.reached(0.3, 0.3) and not MetricDirection.MINIMIZE.reached(0.31, 0.3)


def test_parameter_types_are_inferred_from_modules():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.Linear(2, 2), nn.LayerNorm(2), nn.Embedding(3, 2))
    types = {name: parameter_type(model, name) for name, _ in model.named_parameters()}
    assert types == {
        "0.weight": ParameterType.CONV_WEIGHT, "0.bias": ParameterType.BIAS,
        "1.weight": ParameterType.BATCH_NORM_SCALE, "1.bias": ParameterType.BATCH_NORM_BIAS,
        "2.weight": ParameterType.WEIGHT, "2.bias": ParameterType.BIAS,
        "3.weight": ParameterType.LAYER_NORM_SCALE, "3.bias": ParameterType.LAYER_NORM_BIAS,
        "4.weight": ParameterType.EMBEDDING,
    }


def test_best_metric_follows_the_direction_and_skips_non_finite_values():
    assert MetricDirection.MAXIMIZE.best([0.5, float("nan"), 0.9, float("inf")]) == 0.9
    assert MetricDirection.MINIMIZE.best([2.0, float("-inf"), 1.5]) == 1.5
    assert MetricDirection.MINIMIZE.best([float("nan")]) is None


def test_a_workload_that_declares_no_optional_trait_gets_the_contracts_defaults():
    """Everything the harness reads off a workload is declared in `spec.Workload`; a base
    workload that sets none of the optional traits reads as a one-device base workload."""
    from conftest import ScriptedWorkload

    workload = ScriptedWorkload()
    assert (workload.base_name, workload.variant, workload.multi_device, workload.optimal_loss, workload.run_options) == ("scripted", None, False, None, {})
    workload.check_targets()  # in range: no error


def test_the_harness_probes_no_workload_trait_with_getattr():
    source = "\n".join(path.read_text() for path in (Path(__file__).resolve().parents[1] / "harness").rglob("*.py"))
    assert not re.findall(r"(?:getattr|hasattr)\((?:workload|w|self\.workload),", source)
