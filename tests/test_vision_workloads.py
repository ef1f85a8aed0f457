"""The vision workloads on tiny generated data in the real on-disk formats: one real training
step and one evaluation through the real loaders for every workload and variant, the real
model classes at their true sizes, the stream's determinism and the evaluation's counting."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from vision_data import make_cifar10, make_imagenet

from harness.cli import main
from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode
from harness.experiments.job import _initial_record, prepare_job, run_job
from harness.experiments.run_config import compose
from harness.plugins.loader_workload import LoaderWorkload, ShardedStream, _EvalShard
from harness.plugins.workloads import build_workload, workload_config
from workloads.models.resnet import Bottleneck, resnet18, resnet50
from workloads.models.vit import ViT

REPO = Path(__file__).resolve().parents[1]
# Subprocesses import the test submission from tests/, as pytest does in-process.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
TINY = {
    "cifar10_resnet18": ["workload.width=8", "workload.eval_train_size=8", "workload.validation_size=8"],
    "imagenet_resnet50": ["workload.width=8", "workload.image_size=32", "workload.resize_size=36", "workload.eval_train_size=6"],
    "imagenet_vit": ["workload.width=32", "workload.depth=2", "workload.mlp_dim=64", "workload.num_heads=2", "workload.patch_size=8",
                     "workload.image_size=32", "workload.resize_size=36", "workload.eval_train_size=6"],
}
CASES = [("cifar10_resnet18", None), *(("imagenet_resnet50", v) for v in (None, "silu", "gelu", "large_bn_init")),
         *(("imagenet_vit", v) for v in (None, "glu", "post_ln", "map"))]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    return {"cifar10_resnet18": make_cifar10(root / "cifar10"), "imagenet_resnet50": make_imagenet(root / "imagenet"), "imagenet_vit": root / "imagenet"}


def tiny_overrides(workload: str, data_dir: Path, results: Path, *extra: str) -> list[str]:
    return [f"workload={workload}", "submission=momentum", "submission.module=fixed_batch_submission", f"workload.data_dir={data_dir}",
            "workload.num_workers=0", "workload.eval_num_workers=0", "workload.eval_batch_size=8", f"results_root={results}",
            "max_steps=1", "eval_every_steps=1", "quiet=true", *TINY[workload], *extra]


def tiny_workload(workload: str, data_dir: Path, **overrides: object) -> LoaderWorkload:
    cfg = workload_config(workload)
    for override in TINY[workload]:
        key, value = override.removeprefix("workload.").split("=")
        cfg[key] = int(value)
    return build_workload(cfg | {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0, "eval_batch_size": 8} | overrides)


@pytest.mark.parametrize(("workload", "variant"), CASES, ids=[f"{w}-{v}" for w, v in CASES])
def test_one_train_step_and_eval(workload: str, variant: str | None, data: dict[str, Path], tmp_path: Path) -> None:
    precision = "bf16" if variant == "glu" else "fp32"  # bf16 convolutions are slow on CPU
    overrides = tiny_overrides(workload, data[workload], tmp_path, f"variant={variant or 'null'}", f"workload.precision={precision}")
    record = run_job(compose(overrides))
    assert record["status"] == "step_cap", record.get("error")
    row = record["final"]["last_eval"]
    expected = workload_config(workload)
    targets = expected["variants"][variant] if variant else expected
    assert record["target"]["validation"] == targets["validation_target"]
    assert record["variant"] == variant and record["examples_to_target"]["validation"] is None
    sizes = {"cifar10_resnet18": (8, 8, 10), "imagenet_resnet50": (6, 9, 6), "imagenet_vit": (6, 9, 6)}[workload]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == list(sizes)
    assert all(math.isfinite(row[f"{s}/loss"]) and 0 <= row[f"{s}/accuracy"] <= 1 for s in ("train", "validation", "test"))
    assert record["options"] == {"precision": precision, "compile": False, "world_size": 1}
    assert record["fingerprint"]["precision"] == precision and record["fingerprint"]["compile"] is False


def test_precision_and_compile_change_the_fingerprint(data: dict[str, Path], tmp_path: Path) -> None:
    ids = set()
    for i, extra in enumerate((["workload.precision=fp32"], ["workload.precision=tf32"], ["workload.compile=true"])):
        cfg = compose(tiny_overrides("cifar10_resnet18", data["cifar10_resnet18"], tmp_path / str(i), *extra))
        ids.add(_initial_record(prepare_job(cfg))["fingerprint"]["id"])
    assert len(ids) == 3


def test_true_architectures_forward_at_small_resolution() -> None:
    torch.manual_seed(0)
    model = resnet50()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in torchvision.models.resnet50().parameters())
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
    assert all(float(m.bn3.weight.detach().abs().max()) == 0 for m in model.modules() if isinstance(m, Bottleneck))
    assert all(float(m.bn3.weight.detach().min()) == 8 for m in resnet50(width=8, bn_init_scale=8.0).modules() if isinstance(m, Bottleneck))
    cifar = resnet18(num_classes=10, cifar_stem=True)
    stem_difference = 64 * 3 * (7 * 7 - 3 * 3)  # torchvision's 7x7 stem against the CIFAR 3x3 one
    assert sum(p.numel() for p in cifar.parameters()) == sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters()) - stem_difference
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    vit = ViT()  # ViT-S/16; the variants run at small width in test_one_train_step_and_eval
    assert vit.patch_embed.out_channels == 384 and len(vit.blocks) == 12
    logits = vit(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1000) and float(logits.detach().abs().max()) == 0  # zero-initialised head


def test_stream_depends_on_seed_only(data: dict[str, Path]) -> None:
    workload = tiny_workload("imagenet_resnet50", data["imagenet_resnet50"])
    single = [next(workload.build_input_queue(7, 4))["inputs"] for _ in range(1)]
    with_workers = tiny_workload("imagenet_resnet50", data["imagenet_resnet50"], num_workers=2)
    queue = with_workers.build_input_queue(7, 4)
    batches = [next(queue) for _ in range(6)]  # 24 examples: crosses the 18-image epoch
    torch.testing.assert_close(batches[0]["inputs"], single[0])
    restored = with_workers.build_input_queue(7, 4)
    queue2 = workload.build_input_queue(7, 4)
    for _ in range(3):
        next(queue2)
    restored.load_state_dict(queue2.state_dict())
    torch.testing.assert_close(restored.take(8)["inputs"], torch.cat([batches[3]["inputs"], batches[4]["inputs"]]))
    shards = [next(iter(ShardedStream(18, 7, 4, rank, 2, 0))) for rank in (0, 1)]
    assert np.array_equal(np.concatenate(shards), next(iter(ShardedStream(18, 7, 4, 0, 1, 0))))


def test_eval_counts_every_example_once(data: dict[str, Path]) -> None:
    sizes = (9, 10, 11)
    for size in sizes:
        for world in (1, 2, 3):
            seen = [i for rank in range(world) for i, (_, weight) in _shard_indices(size, rank, world, 4) if weight]
            assert sorted(seen) == list(range(size))
    workload = tiny_workload("imagenet_resnet50", data["imagenet_resnet50"], eval_num_workers=2, eval_batch_size=4)
    model, state = workload.init_model_fn(0)
    result = workload.eval_model(4, model, state, 0, 0)
    validation = workload.datasets.validation
    images = torch.stack([validation[i][0] for i in range(len(validation))])
    labels = torch.tensor([validation[i][1] for i in range(len(validation))])
    logits, _ = workload.model_fn(model, workload.device_batch((images, labels)), None, ForwardPassMode.EVAL, 0, update_batch_norm=False)
    assert result["validation/num_examples"] == len(validation) == 9
    assert result["validation/loss"] == pytest.approx(float(workload.loss_fn(labels, logits)["summed"].detach()) / 9, rel=1e-5)


def _shard_indices(size: int, rank: int, world: int, batch: int) -> list[tuple[int, tuple[int, float]]]:
    shard = _EvalShard(list(range(size)), rank, world, batch)
    shard.dataset = [(i, i) for i in range(size)]
    assert len(shard) % batch == 0
    return [(example[0], (example[1], weight)) for example, weight in (shard[i] for i in range(len(shard)))]


@pytest.mark.parametrize(("workload", "breakage", "expected"), [
    ("imagenet_resnet50", "missing", "does not exist; expected data_dir/train/<wnid>"),
    ("imagenet_resnet50", "no_v2", "imagenet_v2; expected data_dir/train/<wnid>"),
    ("cifar10_resnet18", "corrupt", "test_batch (UnpicklingError"),
    ("cifar10_resnet18", "missing", "lacks data_batch_1"),
    ("mnist1d_mlp", "single_device", "workload mnist1d_mlp runs on one device only, not devices=2"),
])
def test_bad_input_is_one_line_error(workload: str, breakage: str, expected: str, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "nothing"
    if breakage == "no_v2":
        data_dir = make_imagenet(tmp_path / "imagenet", n_classes=2, train_per_class=1, val_per_class=1, v2_per_class=0)
        for folder in (data_dir / "imagenet_v2").iterdir():
            folder.rmdir()
        (data_dir / "imagenet_v2").rmdir()
    if breakage == "corrupt":
        data_dir = make_cifar10(tmp_path / "cifar10", per_batch=2, n_test=2)
        (data_dir / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    data_arg = [] if breakage == "single_device" else [f"workload.data_dir={data_dir}"]
    assert main(["run", f"workload={workload}", *data_arg, f"results_root={tmp_path}/r", "devices=2"]) == 2  # before torchrun starts anything
    stderr = capsys.readouterr().err
    assert stderr.startswith("pacer: error: workload ") and stderr.count("\n") == 1, stderr
    assert expected in stderr


@pytest.mark.parametrize(("workload", "settings", "expected"), [
    ("imagenet_resnet50", {"num_classes": 2}, "num_classes=2 is too few for {data_dir}, whose classes go up to index 2"),
    ("imagenet_vit", {"patch_size": 64}, "patch_size=64 is larger than image_size=32"),
    ("cifar10_resnet18", {"validation_size": 40}, "validation_size=40 leaves no training images (have 40)"),
])
def test_settings_that_do_not_fit_the_data_are_one_line(workload: str, settings: dict[str, object], expected: str, data: dict[str, Path]) -> None:
    """Checked when the workload is built, where its own checks cannot see the data."""
    with pytest.raises(PacerUserError) as error:
        tiny_workload(workload, data[workload], **settings)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {workload}: {expected.format(data_dir=data[workload])}"), message


def test_ddp_two_processes_match_one_process(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Same global batch (4) on one process (this one) and on two gloo processes (2 each): same
    evals. ViT (LayerNorm) with mixup off: BatchNorm statistics and mixup pairs are per rank."""
    runs = {}
    for devices in (1, 2):
        results = tmp_path / f"d{devices}"
        overrides = tiny_overrides("imagenet_vit", data["imagenet_vit"], results, "max_steps=2", "workload.mixup_alpha=0", "hparams.dropout_rate=0.0", f"devices={devices}",
                                   "workload.step_hint=20", "hparams.learning_rate=0.5")  # a one-step warmup: steps that move the model
        if devices == 1:
            assert main(["run", *overrides]) == 0
            stdout = capsys.readouterr().out
        else:
            result = subprocess.run([sys.executable, "-m", "harness", "run", *overrides], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            stdout = result.stdout
        assert stdout.count("momentum on imagenet_vit") == 1  # only rank 0 reports
        trial = results / "default/external/momentum/imagenet_vit/study_0/trial_0"
        runs[devices] = (json.loads((trial / "run.json").read_text()), [json.loads(line) for line in (trial / "evals.jsonl").read_text().splitlines()])
    (one, one_evals), (two, two_evals) = runs[1], runs[2]
    assert two["fingerprint"]["world_size"] == 2 and one["fingerprint"]["id"] != two["fingerprint"]["id"]
    assert [r["examples_seen"] for r in two_evals] == [r["examples_seen"] for r in one_evals] == [4, 8]
    assert abs(one_evals[1]["train/loss"] - one_evals[0]["train/loss"]) > 1e-2
    for a, b in zip(one_evals, two_evals, strict=True):
        for key in ("train/loss", "validation/loss", "test/loss", "validation/accuracy", "validation/num_examples", "test/num_examples"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
