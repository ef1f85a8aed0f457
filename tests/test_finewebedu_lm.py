"""`finewebedu_lm` on tiny token data written in AlgoPerf's on-disk format and converted by
the workload's converter: one training step and one evaluation through the real runner and
loaders, the model's true size, perplexity on hand-made logits, evaluation that counts every
sequence once (one process and two gloo processes), bad data directories, and the config
against AlgoPerf's target tables. (AlgoPerf v1.0 has no finewebedu_lm variants.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from finewebedu_lm_data import make_algoperf_finewebedu, write_hf_split
from gloo import assert_same_results, on_two_gloo_processes

from harness.cli import main
from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode, ParameterType
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.workloads import build_workload, workload_config
from workloads.data.finewebedu_lm import convert
from workloads.finewebedu_lm import LAYOUT, FinewebeduLm, perplexity
from workloads.models.finewebedu_lm import DecoderOnlyTransformer

REPO = Path(__file__).resolve().parents[1]
VOCAB, SEQ_LEN = 64, 16
TINY = {"vocab_size": VOCAB, "seq_len": SEQ_LEN, "width": 16, "num_layers": 2, "num_heads": 2, "mlp_dim": 32,
        "eval_train_size": 5, "validation_size": 7, "num_workers": 0, "eval_num_workers": 0, "eval_batch_size": 4, "precision": "fp32"}
SPAN = SEQ_LEN + 1
TRAIN_SEQUENCES, VAL_SEQUENCES = 12, 9  # the val file holds more than validation_size: the first 7 count


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finewebedu")
    make_algoperf_finewebedu(root / "algoperf", TRAIN_SEQUENCES * SPAN + 3, VAL_SEQUENCES * SPAN + 5, VOCAB)
    convert(root / "algoperf", root / "converted")
    return root / "converted"


def tiny_workload(data_dir: Path, **overrides: object) -> FinewebeduLm:
    return build_workload(workload_config("finewebedu_lm") | TINY | {"data_dir": str(data_dir)} | overrides)


def test_parameter_count_is_algoperfs() -> None:
    """AlgoPerf's `finewebedu_lm_pytorch/models.py` Transformer with the workload's ModelConfig
    (vocab 50,257, seq_len 1,024, model_dim 1,024, 12 layers, 8 heads, expanded_model_dim 4,096,
    multiple_of 256, tied embeddings), counted from its definition:
    embedding 50,257 x 1,024 = 51,463,168; per block w_qkv 1,024 x 3,072 + w_out 1,024^2 +
    attn_scale 1 + two RMSNorms 2 x 1,024 + fc1 1,024 x 8,192 + fc2 4,096 x 1,024 = 16,779,265;
    12 blocks + out_norm 1,024 + lm_head (tied, 0) = 252,815,372."""
    per_block = 1024 * 3072 + 1024 * 1024 + 1 + 2 * 1024 + 1024 * 2 * 4096 + 4096 * 1024
    assert 50257 * 1024 + 12 * per_block + 1024 == 252_815_372
    config = workload_config("finewebedu_lm")
    with torch.device("meta"):
        model = DecoderOnlyTransformer(vocab_size=config["vocab_size"], seq_len=config["seq_len"], width=config["width"],
                                       num_layers=config["num_layers"], num_heads=config["num_heads"], mlp_dim=config["mlp_dim"],
                                       tie_embeddings=config["tie_embeddings"])
    assert sum(p.numel() for p in model.parameters()) == 252_815_372
    assert model.lm_head.weight is model.embed_tokens.weight


def test_converter_keeps_the_token_stream_and_the_reader_cuts_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    streams = make_algoperf_finewebedu(tmp_path / "algoperf", 3 * SPAN + 4, 2 * SPAN, VOCAB)
    assert main(["data", "convert", "finewebedu_lm", str(tmp_path / "algoperf"), str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{tmp_path / 'out'}: {stem}: {len(tokens):,}" for stem, tokens in streams.items()]
    assert not list((tmp_path / "out").glob("*.partial.npy"))
    assert main(["data", "convert", "finewebedu_lm", str(tmp_path / "nothing"), str(tmp_path / "out2")]) == 2
    assert capsys.readouterr().err.startswith(f"pacer: error: pacer data convert finewebedu_lm: {tmp_path / 'nothing' / 'train'} is not a `datasets` save_to_disk folder")
    assert not (tmp_path / "out2").exists()  # nothing written for a bad source
    assert main(["data", "convert", "fineweb", "a", "b"]) == 2
    error = capsys.readouterr().err
    assert "no data converter for workload 'fineweb' (valid: " in error and "finewebedu_lm" in error
    train = np.load(tmp_path / "out" / "train.npy")
    assert train.dtype == np.uint16 and train.tolist() == streams["train"]
    workload = tiny_workload(tmp_path / "out", eval_train_size=100)
    sequences = workload.datasets.eval_train
    assert len(sequences) == 3 and sequences[2]["tokens"].tolist() == streams["train"][2 * SPAN:3 * SPAN]  # the remainder dropped
    batch = workload.device_batch({"tokens": torch.stack([sequences[0]["tokens"], sequences[1]["tokens"]])})
    assert torch.equal(batch["inputs"][:, 1:], batch["targets"][:, :-1]) and batch["inputs"].shape == (2, SEQ_LEN)


WORKERS = {"num_workers": 1, "eval_num_workers": 1}  # the datasets cross into worker processes


def test_one_train_step_and_eval_through_the_runner(data: Path, tmp_path: Path) -> None:
    overrides = ["workload=finewebedu_lm", "submission=adamw", f"workload.data_dir={data}", f"results_root={tmp_path}",
                 "max_steps=1", "eval_every_steps=1", "quiet=true", *(f"workload.{k}={v}" for k, v in (TINY | WORKERS).items())]
    record = run_job(compose(overrides))
    assert record["status"] == "step_cap", record.get("error")
    assert record["target"] == {"metric": "ppl", "direction": "min", "validation": 22.2995, "test": None}
    assert record["options"] == {"precision": "fp32", "compile": False, "world_size": 1, "rules": "v1.0"}
    row = record["final"]["last_eval"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [5, 7, 0]
    for split in ("train", "validation"):
        assert row[f"{split}/ppl"] == pytest.approx(math.exp(row[f"{split}/loss"]))
        assert 1 < row[f"{split}/ppl"] < 10 * VOCAB
    assert "test/ppl" not in row


def test_perplexity_of_hand_made_logits(data: Path) -> None:
    workload = tiny_workload(data)
    uniform = workload.loss_fn(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, VOCAB))
    assert float(uniform["summed"] / uniform["n_valid_examples"]) == pytest.approx(math.log(VOCAB))
    # Two vocabulary entries; token probabilities 1/2, 3/4 and 1/4 (the last token masked out).
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.25, 0.75], [0.75, 0.25]]]))
    loss = workload.loss_fn(torch.tensor([[0, 1, 1]]), logits, torch.tensor([[1.0, 1.0, 0.0]]))
    assert loss["per_example"].shape == (1, 3) and float(loss["n_valid_examples"]) == 2
    assert workload.summarize({"loss": float(loss["summed"]), "tokens": 2.0, "num_examples": 1.0}, [])["ppl"] == pytest.approx(math.sqrt(1 / (0.5 * 0.75)))
    assert workload.summarize({"num_examples": 0.0}, []) == {}
    assert perplexity(1000.0) == math.inf and math.isnan(perplexity(math.nan))  # a diverged run's eval still reports


def test_uniform_model_has_the_vocabulary_size_as_perplexity(data: Path) -> None:
    """Zero output weights: every token has probability 1/V, so every split's ppl is V."""
    workload = tiny_workload(data, tie_embeddings=False)
    model, state = workload.init_model_fn(0)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    result = workload.eval_model(4, model, state, 0, 0)
    assert result["validation/ppl"] == pytest.approx(VOCAB, rel=1e-6) and result["train/ppl"] == pytest.approx(VOCAB, rel=1e-6)


def test_eval_counts_every_sequence_once(data: Path) -> None:
    """Batches of 4 over 7 sequences (one padded): the same loss as all tokens at once."""
    workload = tiny_workload(data)
    model, state = workload.init_model_fn(0)
    result = workload.eval_model(4, model, state, 0, 0)
    validation = workload.datasets.validation
    batch = workload.device_batch({"tokens": torch.stack([validation[i]["tokens"] for i in range(len(validation))])})
    with torch.no_grad():
        logits, _ = workload.model_fn(model, batch, state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        loss = workload.loss_fn(batch["targets"], logits)
    assert result["validation/num_examples"] == 7 and float(loss["n_valid_examples"]) == 7 * SEQ_LEN
    assert result["validation/loss"] == pytest.approx(float(loss["summed"] / loss["n_valid_examples"]), rel=1e-5)


def test_synthetic_batch_trains(data: Path) -> None:
    workload = tiny_workload(data)
    model, state = workload.init_model_fn(0)
    batch = workload.synthetic_batch(3, seed=1)
    assert batch["inputs"].shape == batch["targets"].shape == (3, SEQ_LEN) and int(batch["inputs"].max()) < VOCAB
    logits, _ = workload.model_fn(model, batch, state, ForwardPassMode.TRAIN, 0, update_batch_norm=True)
    loss = workload.loss_fn(batch["targets"], logits)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    types = workload.model_params_types
    assert types["layers.0.attn.w_qkv.weight"] is ParameterType.ATTENTION_QKV and types["layers.1.attn.w_out.weight"] is ParameterType.ATTENTION_OUT
    assert types["embed_tokens.weight"] is ParameterType.EMBEDDING and types["out_norm.weight"] is ParameterType.LAYER_NORM_SCALE
    assert types["layers.0.mlp.fc1.weight"] is types["layers.0.attn.attn_scale"] is ParameterType.WEIGHT


def evaluate(data: Path) -> dict[str, float]:
    workload = tiny_workload(data)
    return workload.eval_model(4, *workload.init_model_fn(0), 0, 0)  # 2 per rank: 7 sequences -> padding on rank 1


def test_two_gloo_processes_evaluate_as_one(data: Path, tmp_path: Path) -> None:
    assert_same_results(on_two_gloo_processes(evaluate, data, folder=tmp_path), evaluate(data))


@pytest.mark.parametrize(("breakage", "expected"), [
    ("missing", "data_dir {data_dir} does not exist"),
    ("unconverted", "{data_dir}/train.npy does not exist (data_dir holds AlgoPerf's unconverted folders: convert them first)"),
    ("wrong_dtype", "{data_dir}/train.npy holds an array of int64, shape (100,), not a flat uint16 array"),
    ("not_npy", "{data_dir}/val.npy is not a .npy array"),
    ("short", "{data_dir}/val.npy holds 3 tokens, fewer than one sequence of seq_len + 1 = 17"),
])
def test_bad_data_dir_is_one_line_naming_the_layout(breakage: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    if breakage != "missing":
        data_dir.mkdir()
        np.save(data_dir / "train.npy", np.zeros(100, dtype=np.int64 if breakage == "wrong_dtype" else np.uint16))
        np.save(data_dir / "val.npy", np.zeros(3 if breakage == "short" else 100, dtype=np.uint16))
    if breakage == "unconverted":
        (data_dir / "train.npy").unlink()
        write_hf_split(data_dir / "train", [[1, 2, VOCAB - 1]])
    if breakage == "not_npy":
        (data_dir / "val.npy").write_bytes(b"not an array")
    overrides = [f"workload.{k}={v}" for k, v in TINY.items()]
    assert main(["run", "workload=finewebedu_lm", f"workload.data_dir={data_dir}", f"results_root={tmp_path}/r", *overrides]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"pacer: error: workload finewebedu_lm: {expected.format(data_dir=data_dir)}") and stderr.count("\n") == 1, stderr
    assert f"; expected {LAYOUT}" in stderr


def test_config_matches_algoperf_tables(data: Path) -> None:
    """finewebedu_lm exists from AlgoPerf v1.0 on: only `by_rules.v1.0`, cross-checked with the
    harness's table; any other rules version is a one-line error listing the valid ones."""
    config = workload_config("finewebedu_lm")
    assert config["rules"] == "v1.0" and set(config["by_rules"]) == {"v1.0"} and not config.get("variants")
    table = json.loads((REPO / "harness/data/algoperf_targets_v1.0.json").read_text())["workloads"]["finewebedu_lm"]
    rules = config["by_rules"]["v1.0"]
    assert (table["metric"], table["direction"]) == (FinewebeduLm.target_metric_name, FinewebeduLm.target_metric_direction.value)
    assert (rules["validation_target"], rules["test_target"], rules["max_runtime_sec"], rules["step_hint"]) == (
        table["validation"], table["test"], table["max_runtime_sec"], table["step_hint"])
    v06 = json.loads((REPO / "harness/data/algoperf_targets_v0.6.json").read_text())["workloads"]
    assert "finewebedu_lm" not in v06
    with pytest.raises(PacerUserError, match=r"^workload finewebedu_lm: unknown rules 'v0.6' \(valid: v1.0\)$"):
        tiny_workload(data, rules="v0.6")
    with pytest.raises(PacerUserError, match=r"^workload finewebedu_lm: test_target=20.0 must be null: finewebedu_lm has no test split \(config: "):
        tiny_workload(data, by_rules={"v1.0": config["by_rules"]["v1.0"] | {"test_target": 20.0}})
    workload = tiny_workload(data)
    assert (workload.validation_target_value, workload.test_target_value, workload.eval_period_time_sec) == (22.2995, None, 2571)
    assert not workload.has_reached_test_target({"test/num_examples": 0.0})


@pytest.mark.parametrize(("settings", "words"), [
    ({"width": 100}, "width=100 / num_heads=8 must be a whole, even head dimension (rotary embeddings)"),
    ({"width": 24}, "width=24 / num_heads=8 must be a whole, even head dimension (rotary embeddings)"),
    ({"vocab_size": 70000}, "vocab_size=70000 does not fit the uint16 token files"),
    ({"tie_embeddings": "yes"}, "tie_embeddings='yes' must be true or false"),
    ({"validation_size": 0}, "validation_size=0 must be an integer >= 1"),
    ({"rmsnorm_epsilon": 0.0}, "rmsnorm_epsilon=0.0 must be a finite number > 0"),
])
def test_a_bad_setting_is_one_line_before_any_data(settings: dict[str, object], words: str, tmp_path: Path) -> None:
    with pytest.raises(PacerUserError) as error:
        build_workload(workload_config("finewebedu_lm") | {"data_dir": str(tmp_path / "absent")} | settings)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload finewebedu_lm: {words}"), message
