"""fastmri on tiny volumes written in the real `.h5` format and AlgoPerf's layout: AlgoPerf's
preprocessing against a NumPy transcription, one real training step and one evaluation
through the real runner for the base workload and each variant, SSIM on hand-made images and
against an independent implementation, the loss, the true-size parameter counts, the
data-directory errors and the config against AlgoPerf's tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastmri_data import SIZES, make_fastmri

from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from workloads.fastmri import FastMRI

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [None, "model_size", "tanh", "layernorm"]
TINY = {"num_channels": 4, "num_pool_layers": 2, "validation_volumes": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fastmri(tmp_path_factory.mktemp("fastmri"))


def tiny_workload(data_dir: Path, variant: str | None = None, **overrides: object) -> FastMRI:
    cfg = workload_config("fastmri") | TINY | {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0,
                                                "eval_batch_size": 2, "eval_train_size": 4}
    return build_workload(cfg | overrides, variant)


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_one_train_step_and_eval_through_the_runner(variant: str | None, data: Path, tmp_path: Path) -> None:
    overrides = ["workload=fastmri", "submission=momentum", "submission.module=fixed_batch_submission",
                 f"workload.data_dir={data}", "workload.num_workers=0", "workload.eval_num_workers=0",
                 "workload.eval_batch_size=2", "workload.eval_train_size=4", f"results_root={tmp_path}", "max_steps=1",
                 "eval_every_steps=1", "quiet=true", f"variant={variant or 'null'}",
                 *(f"workload.{key}={json.dumps(value)}" for key, value in TINY.items())]
    record = run_job(compose(overrides))
    assert record["status"] == "step_cap", record.get("error")
    row = record["final"]["last_eval"]
    expected = resolve_variant(workload_config("fastmri"), variant)
    assert record["target"]["validation"] == expected["validation_target"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [4, SIZES["validation"], SIZES["test"]]
    assert all(-1 <= row[f"{s}/ssim"] <= 1 and row[f"{s}/loss"] > 0 for s in ("train", "validation", "test"))


# AlgoPerf's fastmri_pytorch/models.py, counted by hand: a ConvBlock(i, o) has two bias-free
# 3x3 convs, 9 i o + 9 o o weights (InstanceNorm2d has no parameters; the layernorm variant's
# GroupNorm(1, o) adds 2 o per norm, 4 o per block); a TransposeConvBlock(i, o) 4 i o (its
# InstanceNorm2d stays, even in the layernorm variant); the output 1x1 conv c + 1.
def _algoperf_unet_parameters(c: int, pools: int, layer_norm: bool) -> int:
    def block(i: int, o: int) -> int:
        return 9 * i * o + 9 * o * o + (4 * o if layer_norm else 0)

    total, ch = block(1, c), c
    for _ in range(pools - 1):
        total, ch = total + block(ch, 2 * ch), 2 * ch
    total += block(ch, 2 * ch)  # bottleneck
    for _ in range(pools):
        total += 4 * (2 * ch) * ch + block(2 * ch, ch)
        ch //= 2
    return total + c + 1  # the output 1x1 conv, with bias


PARAMETERS = {None: 7_756_097, "model_size": 7_692_929, "tanh": 7_756_097, "layernorm": 7_761_985}


def test_hand_count_gives_the_table() -> None:
    assert [_algoperf_unet_parameters(32, 4, False), _algoperf_unet_parameters(64, 3, False),
            _algoperf_unet_parameters(32, 4, True)] == [PARAMETERS[None], PARAMETERS["model_size"], PARAMETERS["layernorm"]]


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_full_size_parameter_count_equals_algoperf(variant: str | None, data: Path) -> None:
    """The workload's own `build_model` at the config's full sizes, on the meta device."""
    workload = build_workload(workload_config("fastmri") | {"data_dir": str(data), "validation_volumes": 1}, variant)
    with torch.device("meta"):
        model = workload.build_model()
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[variant]
    names = [name for name, _ in model.named_parameters()]
    assert "up_conv.3.1.weight" in names or variant == "model_size"  # AlgoPerf's is_output_params names


@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_config_matches_algoperf_tables(rules: str, variant: str | None) -> None:
    table = json.loads((REPO / "harness" / "data" / f"algoperf_targets_{rules}.json").read_text())["workloads"]
    row = table["fastmri" + (f"_{variant}" if variant else "")]
    cfg = resolve_variant(workload_config("fastmri") | {"rules": rules}, variant)
    assert (row["base_workload"], row["variant"], row["metric"], row["direction"]) == ("fastmri", variant, "ssim", "max")
    assert (cfg["validation_target"], cfg["test_target"], cfg["max_runtime_sec"], cfg["step_hint"]) == (
        row["validation"], row["test"], row["max_runtime_sec"], row["step_hint"])
    assert cfg["eval_period_sec"] == 80  # AlgoPerf's eval_period_time_sec in both versions
