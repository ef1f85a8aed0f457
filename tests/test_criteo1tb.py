"""criteo1tb on tiny data written in AlgoPerf's raw layout: the FarmHash against published
values, the converter, one real training step and one evaluation through the real runner
for the base workload and each variant, the loss on hand-made examples, the true-size
parameter counts, the data-directory errors and the config against AlgoPerf's tables."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from criteo1tb_data import SIZES, make_raw
from gloo import assert_same_results, on_two_gloo_processes, trained
from torch import nn

from harness.cli import main
from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from workloads.criteo1tb import Criteo1TB
from workloads.data.criteo1tb import VOCAB_SIZES, CriteoArrays, convert, fingerprint64, parse_batch, read_batches
from workloads.models.criteo1tb import DLRM

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [None, "layernorm", "resnet", "embed_init"]
TINY = {"vocab_size": 64, "embed_dim": 8, "mlp_bottom_dims": [16, 8], "mlp_top_dims": [16, 8, 1]}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("criteo1tb")
    raw = make_raw(root / "raw")
    convert(raw, root / "converted", block_bytes=1024)  # blocks of a few lines
    return {"raw": raw, "converted": root / "converted"}


def tiny_workload(data_dir: Path, variant: str | None = None, **overrides: object) -> Criteo1TB:
    cfg = workload_config("criteo1tb") | TINY | {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0,
                                                  "eval_batch_size": 5, "eval_train_size": 7}
    return build_workload(cfg | overrides, variant)


def test_fingerprint64_matches_published_values() -> None:
    """TensorFlow's fingerprint_test.cc ("Hello", "World"), BigQuery's FARM_FINGERPRINT docs
    ("alphabet", "1footrue", "2applefalse", "3true"), Redshift's farmFingerprint64 docs
    ("Amazon Redshift"), `to_hash_bucket_fast(["Hello", "TensorFlow", "2.x"], 3) == [0, 2, 2]`
    (TF docs) and FarmHash's empty-string value k2: every length branch up to 16 bytes."""
    strings = [b"Hello", b"World", b"alphabet", b"1footrue", b"2applefalse", b"3true", b"Amazon Redshift", b""]
    expected = [15404698994557526151, 18308117990299812472, -2427165924636348523, -1541654101129638711, 2794438866806483259,
                -4880158226897771312, 8085098817162212970, 0x9AE16A3B2F90404F]
    assert fingerprint64(strings).tolist() == [value % (1 << 64) for value in expected]
    assert (fingerprint64([b"Hello", b"TensorFlow", b"2.x"]) % np.uint64(3)).tolist() == [0, 2, 2]
    with pytest.raises(ValueError, match="at most 16 bytes"):
        fingerprint64([b"seventeen bytes!!"])


def test_parse_batch_preprocesses_as_algoperf(tmp_path: Path) -> None:
    """Label, log(max(x, 0) + 1) with empty/-1 as 0, and ids of str(value) + str(column)."""
    line = ["1", "", "-1", "-5", "0", "1", "9", "99", "999", "3", "4", "5", "6", "7"] + ["", "68fd1e64", "-1"] + ["0123abcd"] * 23
    (tmp_path / "day_0_00").write_text("\t".join(line) + "\n")
    arrays = parse_batch(next(read_batches(tmp_path / "day_0_00")))
    assert arrays["labels"].tolist() == [1.0]
    expected_dense = np.log(np.array([0, 0, 0, 0, 1, 9, 99, 999, 3, 4, 5, 6, 7], dtype=np.float32) + 1)
    np.testing.assert_array_equal(arrays["dense"][0], expected_dense)
    ids = arrays["categorical"][0]
    assert ids[0] == int(np.float32(fingerprint64([b"000000000"])[0] % np.uint64(VOCAB_SIZES[0])))
    assert ids[1] == int(np.float32(fingerprint64([b"68fd1e641"])[0] % np.uint64(VOCAB_SIZES[1])))
    assert ids[2] == fingerprint64([b"000000002"])[0] % np.uint64(VOCAB_SIZES[2])
    assert ids[25] == fingerprint64([b"0123abcd25"])[0] % np.uint64(VOCAB_SIZES[25]) and (ids < np.array(VOCAB_SIZES)).all()


def test_converter_writes_every_line_in_split_order(data: dict[str, Path]) -> None:
    for split, n in SIZES.items():
        assert len(CriteoArrays(data["converted"] / split)) == n
    test = CriteoArrays(data["converted"] / "test")
    first = parse_batch(next(read_batches(data["raw"] / "day_23_00")))
    inputs, label = test[0]
    assert inputs.shape == (39,) and inputs.dtype == torch.float32
    assert torch.equal(inputs, torch.from_numpy(np.concatenate([first["dense"][0], first["categorical"][0].astype(np.float32)])))
    assert float(label) == first["labels"][0]
    last = parse_batch(next(read_batches(data["raw"] / "day_23_35")))
    assert float(CriteoArrays(data["converted"] / "validation")[16][1]) == last["labels"][0]


def test_converter_entry_point(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "convert", "criteo1tb", str(data["raw"]), str(tmp_path / "out")]) == 0  # one job per core
    assert f"{tmp_path / 'out'}: train: 12" in capsys.readouterr().out
    for split in SIZES:
        for name in ("dense", "categorical", "labels"):
            assert (tmp_path / "out" / split / f"{name}.npy").read_bytes() == (data["converted"] / split / f"{name}.npy").read_bytes()
    assert main(["data", "convert", "criteo1tb", str(tmp_path), str(tmp_path / "out2")]) == 2
    assert "no training files" in capsys.readouterr().err


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_one_train_step_and_eval_through_the_runner(variant: str | None, data: dict[str, Path], tmp_path: Path) -> None:
    overrides = ["workload=criteo1tb", "submission=momentum", "submission.module=fixed_batch_submission",
                 f"workload.data_dir={data['converted']}", "workload.num_workers=0", "workload.eval_num_workers=0",
                 "workload.eval_batch_size=5", "workload.eval_train_size=7", f"results_root={tmp_path}", "max_steps=1",
                 "eval_every_steps=1", "quiet=true", f"variant={variant or 'null'}",
                 *(f"workload.{key}={json.dumps(value)}" for key, value in TINY.items())]
    record = run_job(compose(overrides))
    assert record["status"] == "step_cap", record.get("error")
    row = record["final"]["last_eval"]
    expected = resolve_variant(workload_config("criteo1tb"), variant)
    assert record["target"]["validation"] == expected["validation_target"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [7, SIZES["validation"], SIZES["test"]]
    assert all(math.isfinite(row[f"{s}/loss"]) and row[f"{s}/loss"] > 0 for s in ("train", "validation", "test"))


class ConstantLogit(nn.Module):
    def __init__(self, logit: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(logit))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logit.expand(len(inputs), 1)


def test_loss_on_hand_made_examples(data: dict[str, Path]) -> None:
    """Per example -(y log s(z) + (1 - y) log s(-z)): z=0 -> log 2 either way; z=2, y=0 ->
    log(1 + e^2) = 2.126928; z=-1, y=1 -> log(1 + e) = 1.313262; the mask drops the last."""
    workload = tiny_workload(data["converted"])
    loss = workload.loss_fn(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([[0.0], [2.0], [-1.0], [5.0]]), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    assert float(loss["summed"]) == pytest.approx(0.693147 + 2.126928 + 1.313262, abs=1e-5)
    assert float(loss["n_valid_examples"]) == 3 and float(loss["per_example"][3]) == 0.0
    unmasked = workload.loss_fn(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]))
    assert float(unmasked["summed"]) == pytest.approx(2 * math.log(2)) and float(unmasked["n_valid_examples"]) == 2


def test_eval_is_the_mean_loss_over_every_example_once(data: dict[str, Path]) -> None:
    """A constant logit z: the split's loss is (clicks * log(1 + e^-z) + others * log(1 + e^z)) / n,
    with 5-example batches that divide none of the splits."""
    workload = tiny_workload(data["converted"])
    z = 0.7
    result = workload.eval_model(5, ConstantLogit(z), None, 0, 0)
    for split, key in (("validation", "validation"), ("test", "test"), ("train", "eval_train")):
        labels = [float(example[1]) for example in getattr(workload.datasets, key)]
        clicks = sum(labels)
        expected = (clicks * math.log1p(math.exp(-z)) + (len(labels) - clicks) * math.log1p(math.exp(z))) / len(labels)
        assert result[f"{split}/num_examples"] == len(labels)
        assert result[f"{split}/loss"] == pytest.approx(expected, rel=1e-6)
    assert len(workload.datasets.eval_train) == 7


def test_synthetic_batch_trains(data: dict[str, Path]) -> None:
    workload = tiny_workload(data["converted"], "resnet")
    model, _ = workload.init_model_fn(0)
    batch = workload.synthetic_batch(6, seed=1)
    assert batch["inputs"].shape == (6, 39) and batch["targets"].shape == (6,)
    logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, 0, update_batch_norm=True)
    loss = workload.loss_fn(batch["targets"], logits)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("use_resnet", [False, True])
def test_ids_wrap_around_the_table_and_the_chunks_are_one_table(use_resnet: bool) -> None:
    """AlgoPerf takes ids mod vocab_size in one table made of the chunks in order: an id and
    the same id plus vocab_size give the same logits, and the rows read are the table's."""
    torch.manual_seed(0)
    dims = {"mlp_bottom_dims": (8, 8), "mlp_top_dims": (8, 8, 1)}
    model = DLRM(vocab_size=64, embed_dim=8, use_resnet=use_resnet, use_layer_norm=True, **dims).eval()
    inputs = torch.cat([torch.rand(3, 13), torch.randint(0, 64, (3, 26)).float()], dim=1)
    shifted = inputs.clone()
    shifted[:, 13:] += 64 * torch.randint(0, 3, (3, 26)).float()
    assert torch.equal(model(inputs), model(shifted))
    assert torch.equal(model.embedding_table()[17], model.embedding_chunk_1[1])  # 16 rows per chunk


# AlgoPerf's criteo1tb_pytorch/models.py at vocab_size 4,194,304 = 32 * 128 * 1024, embed_dim 128:
# table 4,194,304 * 128 = 536,870,912 (4 chunks). DlrmSmall: bottom 13->512->256->128 = 7,168 +
# 131,328 + 32,896 = 171,392; top 506 (= 128 + 27 * 28 / 2) ->1024->1024->512->256->1 =
# 519,168 + 1,049,600 + 524,800 + 131,328 + 257 = 2,225,153; total 539,267,457. LayerNorm adds
# 2 * (512 + 256 + 128 + 1024 + 1024 + 512 + 256 + 128) = 7,680. DLRMResNet: bottom 13->256->256->256
# = 3,584 + 2 * 65,792 = 135,168; top 3,584 (= 26 * 128 + 256) ->256->256->256->256->1 = 917,760 +
# 3 * 65,792 + 257 = 1,115,393; total 538,121,473. embed_init changes no shape.
PARAMETERS = {None: 539_267_457, "layernorm": 539_275_137, "resnet": 538_121_473, "embed_init": 539_267_457}


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_full_size_parameter_count_equals_algoperf(variant: str | None, data: dict[str, Path]) -> None:
    """The workload's own `build_model` at the config's full sizes, on the meta device (no memory)."""
    workload = build_workload(workload_config("criteo1tb") | {"data_dir": str(data["converted"])}, variant)
    with torch.device("meta"):
        model = workload.build_model()
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[variant]
    assert [p.shape for n, p in model.named_parameters() if n.startswith("embedding_chunk")] == [(1_048_576, 128)] * 4


@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_config_matches_algoperf_tables(rules: str, variant: str | None) -> None:
    table = json.loads((REPO / "harness" / "data" / f"algoperf_targets_{rules}.json").read_text())["workloads"]
    row = table["criteo1tb" + (f"_{variant}" if variant else "")]
    cfg = resolve_variant(workload_config("criteo1tb") | {"rules": rules}, variant)
    assert (row["base_workload"], row["variant"], row["metric"], row["direction"]) == ("criteo1tb", variant, "loss", "min")
    assert (cfg["validation_target"], cfg["test_target"], cfg["max_runtime_sec"], cfg["step_hint"]) == (
        row["validation"], row["test"], row["max_runtime_sec"], row["step_hint"])
    assert cfg["eval_period_sec"] == 120  # AlgoPerf's eval_period_time_sec: 2 minutes in both versions


@pytest.mark.parametrize(("settings", "expected"), [
    ({"vocab_size": 63}, "vocab_size=63 is not a multiple of 4"),
    ({"mlp_bottom_dims": [16, 4]}, "mlp_bottom_dims[-1]=4 must equal embed_dim=8"),
    ({"mlp_top_dims": [16, 2]}, "must end in 1"),
    ({"use_resnet": True, "mlp_top_dims": [16, 8, 1]}, "a residual layer of 16 -> 8 features"),
    ({"embedding_init_multiplier": 0}, "embedding_init_multiplier=0 must be a finite number > 0"),
])
def test_sizes_that_do_not_fit_are_one_line(settings: dict[str, object], expected: str, data: dict[str, Path]) -> None:
    with pytest.raises(PacerUserError, match=re.escape(expected) + ".*config: .*criteo1tb.yaml"):
        tiny_workload(data["converted"], **settings)


def test_missing_or_malformed_data_is_one_line_naming_the_layouts(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PacerUserError, match=r"train/dense.npy is missing; expected .*converted .*raw: AlgoPerf's day_<d>_<NN>"):
        tiny_workload(tmp_path / "nothing")
    with pytest.raises(PacerUserError, match=r"holds the raw TSV files: convert them once with `pacer data convert criteo1tb"):
        tiny_workload(data["raw"])
    broken = tmp_path / "broken"
    for split in ("train", "validation", "test"):
        (broken / split).mkdir(parents=True)
        for name in ("dense", "categorical", "labels"):
            (broken / split / f"{name}.npy").write_bytes((data["converted"] / split / f"{name}.npy").read_bytes())
    np.save(broken / "test" / "categorical.npy", np.zeros((SIZES["test"], 25), dtype=np.int32))
    with pytest.raises(PacerUserError, match=r"categorical.npy holds int32 \(19, 25\), not int32 \(N, 26\); expected"):
        tiny_workload(broken)
    np.save(broken / "test" / "categorical.npy", np.zeros((3, 26), dtype=np.int32))
    with pytest.raises(PacerUserError, match=r"lengths \[3, 19\]"):
        tiny_workload(broken)


def evaluate_trained(data_dir: Path) -> dict[str, float]:
    workload = tiny_workload(data_dir)
    return workload.eval_model(6, trained(workload, 0.5), None, 0, 0)  # 3 per rank: padding on both ranks


@pytest.mark.slow  # two fresh interpreters importing torch and the harness: ~30-60 s on a shared CPU
def test_two_gloo_processes_train_and_evaluate_as_one(data: dict[str, Path], tmp_path: Path) -> None:
    two = on_two_gloo_processes(evaluate_trained, data["converted"], folder=tmp_path)
    one = evaluate_trained(data["converted"])
    assert one["validation/num_examples"] == SIZES["validation"]
    assert_same_results(two, one)
