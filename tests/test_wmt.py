"""The `wmt` workload (AlgoPerf's WMT17 de-en Transformer) and its variants on a tiny WMT
written in AlgoPerf's TFDS layout (tests/wmt_data.py): parameter counts, packing, the
loss mask, BLEU, beam search, cached decoding, one training step and one evaluation
through the real loaders, data-directory errors and the AlgoPerf target tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
from gloo import assert_same_results, on_two_gloo_processes

from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode, ParameterType
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from harness.scoring.algoperf_import import algoperf_targets
from tests.wmt_data import SIZES, make_wmt
from workloads.data import wmt as data
from workloads.models.wmt import EOS_ID, Transformer, beam_search, brevity_penalty, reorder_cache
from workloads.wmt import Wmt, corpus_bleu

VARIANTS = (None, "post_ln", "attention_temp", "glu_tanh")
TINY = {"vocab_size": 48, "d_model": 16, "num_heads": 2, "d_hid": 16, "num_layers": 1, "max_length": 48, "beam_size": 2,
        "max_decode_length": 6, "batch_size": 4, "eval_batch_size": 4, "eval_train_size": 6, "num_workers": 0, "eval_num_workers": 0}


@pytest.fixture(scope="module")
def wmt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wmt(tmp_path_factory.mktemp("wmt"))


def tiny(data_dir: Path, variant: str | None = None, **overrides: object) -> Wmt:
    config = workload_config("wmt") | TINY | {"data_dir": str(data_dir)} | overrides
    workload = build_workload(config, variant)
    assert isinstance(workload, Wmt)
    return workload


# --- model -------------------------------------------------------------------------------

# AlgoPerf algoperf/workloads/wmt/wmt_pytorch/models.py at full size (vocab 32000, d_model 1024,
# d_hid 1024, 6 + 6 layers; attention without biases, Linear and LayerNorm with):
#   shared embedding                  32000 * 1024                                 = 32,768,000
#   encoder layer  in_proj 3*1024^2 + out_proj 1024^2 + linear1, linear2 2*(1024^2 + 1024)
#                  + norm1, norm2 2*2*1024                                         =  6,297,600
#   decoder layer  self 4*1024^2 + cross (q 1024^2 + kv 2*1024^2 + out 1024^2)
#                  + linear1, linear2 2*(1024^2 + 1024) + norm1-3 3*2*1024         = 10,493,952
#   final encoder and decoder LayerNorms (pre-LN only)                               2 * 2,048
#   base: 32,768,000 + 6 * 6,297,600 + 6 * 10,493,952 + 4,096                       = 133,521,408
#   post-LN: no final norms                                                         = 133,517,312
#   GLU: one more Linear(1024, 1024) per layer, 12 * 1,049,600 more                 = 146,116,608
ALGOPERF_PARAMETERS = {None: 133_521_408, "post_ln": 133_517_312, "attention_temp": 133_521_408, "glu_tanh": 146_116_608}


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_parameter_count_equals_algoperfs(variant: str | None) -> None:
    config = resolve_variant(workload_config("wmt"), variant)
    with torch.device("meta"):
        model = Transformer(vocab_size=config["vocab_size"], d_model=config["d_model"], num_heads=config["num_heads"],
                            d_hid=config["d_hid"], num_layers=config["num_layers"], activation=config["activation"],
                            glu=config["glu"], pre_ln=config["pre_ln"], attention_temp=config["attention_temp"])
    assert sum(p.numel() for p in model.parameters()) == ALGOPERF_PARAMETERS[variant]


def test_cached_decoding_equals_teacher_forcing() -> None:
    torch.manual_seed(0)
    model = Transformer(vocab_size=20, d_model=16, num_heads=2, d_hid=16, num_layers=2).eval()
    inputs = torch.tensor([[5, 6, 7, EOS_ID, 0], [8, 9, EOS_ID, 0, 0]])
    targets = torch.tensor([[11, 12, 13, EOS_ID], [14, 15, 16, 17]])
    with torch.no_grad():
        memory = model.encode(inputs)
        forced = model.decode(targets, memory, inputs)
        cache: dict[str, torch.Tensor] = {}
        previous = torch.zeros(2, dtype=torch.long)  # the decoder starts from token 0
        for t in range(targets.shape[1]):
            step = model.decode_step(previous, memory, inputs, cache)
            torch.testing.assert_close(step, forced[:, t], rtol=1e-4, atol=1e-5)
            previous = targets[:, t]


# --- packing and loss --------------------------------------------------------------------

def pairs_of(*pairs: tuple[list[int], list[int]]) -> data.TokenizedPairs:
    ins, outs = [np.array(a) for a, _ in pairs], [np.array(b) for _, b in pairs]
    offsets = [np.concatenate([[0], np.cumsum([len(x) for x in side])]) for side in (ins, outs)]
    return data.TokenizedPairs(np.concatenate(ins), offsets[0], np.concatenate(outs), offsets[1])


def test_packing_follows_algoperfs_example() -> None:
    """The example of AlgoPerf's `pack_dataset` docstring (rows of 10), plus a pair that no
    longer fits and starts the next row."""
    pairs = pairs_of(([8, 7, 1], [4, 1]), ([2, 3, 4, 1], [5, 6, 1]), ([9, 9, 9, 9], [7, 1]))
    rows = data.pack(pairs, [0, 1, 2], max_length=10)
    assert rows == [[0, 1], [2]]
    row = data.PackedExamples(pairs, rows, 10)[0]
    expected = {"inputs": [8, 7, 1, 2, 3, 4, 1, 0, 0, 0], "inputs_segmentation": [1, 1, 1, 2, 2, 2, 2, 0, 0, 0],
                "inputs_position": [0, 1, 2, 0, 1, 2, 3, 0, 0, 0], "targets": [4, 1, 5, 6, 1, 0, 0, 0, 0, 0],
                "targets_segmentation": [1, 1, 2, 2, 2, 0, 0, 0, 0, 0], "targets_position": [0, 1, 0, 1, 2, 0, 0, 0, 0, 0]}
    assert {key: value.tolist() for key, value in row.items()} == expected
    assert data.pack(pairs, [0, 1, 2], max_length=10, group=1) == [[0], [1], [2]]  # packing restarts every group


def test_packed_examples_do_not_see_each_other() -> None:
    """In a row of two packed pairs, the second pair's encoding and the first pair's logits
    are what each gets alone. (The second pair's decoder input starts with the first pair's
    EOS, not 0: AlgoPerf shifts the whole row right, in PyTorch and in JAX.)"""
    torch.manual_seed(0)
    model = Transformer(vocab_size=20, d_model=16, num_heads=2, d_hid=16, num_layers=1, max_len=10).eval()
    pairs = pairs_of(([5, 6, EOS_ID], [7, EOS_ID]), ([8, 9, 10, EOS_ID], [11, 12, EOS_ID]))
    row = {k: v[None].long() for k, v in data.PackedExamples(pairs, [[0, 1]], 10)[0].items()}
    first, second = ({k: v[None].long() for k, v in data.PaddedExamples(pairs, [i], 10)[0].items()} for i in (0, 1))
    with torch.no_grad():
        packed_memory = model.encode(row["inputs"], row["inputs_position"], row["inputs_segmentation"])
        torch.testing.assert_close(packed_memory[0, 3:7], model.encode(second["inputs"])[0, :4], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(**row)[0, :2], model(first["inputs"], first["targets"])[0, :2], rtol=1e-4, atol=1e-5)


def test_loss_masks_padding_tokens(wmt_dir: Path) -> None:
    workload = tiny(wmt_dir)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 2, 0], [3, 0, 0]])
    mask = (labels > 0).float()
    out = workload.loss_fn(labels, logits, mask, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits[mask.bool()], labels[mask.bool()], reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(out["summed"], expected)
    assert out["n_valid_examples"] == 3 and out["per_example"].shape == (2, 3) and (out["per_example"][~mask.bool()] == 0).all()


# --- metric and decoding ------------------------------------------------------------------

def test_bleu_of_two_pairs_by_hand() -> None:
    hypotheses = ["the cat sat on the mat", "a dog ran home"]
    references = ["the cat sat on the mat", "a dog ran fast"]
    # n-gram matches / totals over both sentences: 1: 9/10, 2: 7/8, 3: 5/6, 4: 3/4; both
    # sides have 10 tokens, so no brevity penalty.
    by_hand = 100 * (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** (1 / 4)
    assert corpus_bleu(hypotheses, references) == pytest.approx(by_hand, rel=1e-9)
    assert corpus_bleu(hypotheses, references) == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score, rel=1e-12)


# Next-token probabilities by the previous token (0: the start; 1 "a", 3 "b", 2 EOS).
NEXT = {0: [0.0, 0.4, 0.0, 0.6], 1: [0.0, 0.05, 0.9, 0.05], 3: [0.0, 0.35, 0.3, 0.35]}


def fixed_step(tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return torch.tensor([NEXT[int(t)] for t in tokens]).clamp_min(1e-12).log()


def best_by_enumeration(max_tokens: int, alpha: float) -> list[int]:
    """Every sequence that ends with EOS within `max_tokens` tokens, scored as beam search scores."""
    best, best_score = [], -math.inf
    frontier = [([], 0.0)]
    for length in range(1, max_tokens + 1):
        grown = []
        for seq, logp in frontier:
            for token, p in enumerate(NEXT[seq[-1] if seq else 0]):
                if p > 0:
                    grown.append((seq + [token], logp + math.log(p)))
        for seq, logp in grown:
            if seq[-1] == EOS_ID and logp / brevity_penalty(alpha, length) > best_score:
                best, best_score = seq, logp / brevity_penalty(alpha, length)
        frontier = [(s, lp) for s, lp in grown if s[-1] != EOS_ID]
    return best


def test_beam_search_returns_the_highest_scoring_sequence() -> None:
    """Greedy decoding takes "b" (0.6) first and ends worse; a beam of 2 finds "a EOS"."""
    expected = best_by_enumeration(4, 0.6)
    assert expected == [1, EOS_ID]
    found = beam_search(fixed_step, batch_size=3, beam_size=2, alpha=0.6, max_decode_len=5)
    assert found.tolist() == [[1, EOS_ID, EOS_ID, EOS_ID]] * 3


def test_beam_search_with_the_reordered_cache_equals_decoding_each_prefix_afresh() -> None:
    """Reordering the decoder cache by beam gives what re-decoding every beam's whole prefix
    without a cache gives."""
    torch.manual_seed(4)  # a model for which skipping or mixing up the reordering changes translations
    model = Transformer(vocab_size=12, d_model=16, num_heads=2, d_hid=16, num_layers=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)  # sharper logits: beams diverge and finish at different lengths
    inputs = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, 0], [10, 11, 3, EOS_ID]])
    memory, sources = model.encode(inputs).repeat_interleave(4, 0), inputs.repeat_interleave(4, 0)
    cache: dict[str, torch.Tensor] = {}
    prefixes = torch.zeros(12, 0, dtype=torch.long)

    def cached(tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        reorder_cache(cache, order)
        return model.decode_step(tokens, memory, sources, cache)

    def afresh(tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        nonlocal prefixes
        prefixes = torch.cat([prefixes[order], tokens[:, None]], 1)
        fresh: dict[str, torch.Tensor] = {}
        for t in range(prefixes.shape[1]):
            logits = model.decode_step(prefixes[:, t], memory, sources, fresh)
        return logits

    with torch.no_grad():
        assert torch.equal(beam_search(cached, 3, beam_size=4, max_decode_len=10), beam_search(afresh, 3, beam_size=4, max_decode_len=10))


# --- the workload through its loaders -----------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_one_train_step_and_one_evaluation(wmt_dir: Path, variant: str | None) -> None:
    workload = tiny(wmt_dir, variant, num_workers=1 if variant is None else 0)
    assert workload.name == ("wmt" if variant is None else f"wmt_{variant}")
    model, state = workload.init_model_fn(0)
    batch = next(workload.build_input_queue(1, 4))
    assert batch["inputs"].shape == (4, 48) and batch["weights"].shape == (4, 48)
    logits, _ = workload.model_fn(model, batch, state, ForwardPassMode.TRAIN, 0, update_batch_norm=True)
    loss = workload.loss_fn(batch["targets"], logits, batch["weights"], label_smoothing=0.1)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad
    assert workload.num_train_examples == SIZES["train"] > len(workload.datasets.train)  # pairs, packed into fewer rows
    results = workload.eval_model(4, model, state, 0, 1)
    for split, n in (("train", TINY["eval_train_size"]), ("validation", SIZES["validation"]), ("test", SIZES["test"])):
        assert results[f"{split}/num_examples"] == n
        assert 0.0 <= results[f"{split}/bleu"] <= 100.0 and 0.0 <= results[f"{split}/accuracy"] <= 1.0
        assert math.isfinite(results[f"{split}/loss"])


def test_evaluation_translates_every_example_once(wmt_dir: Path) -> None:
    """The gathered per-example strings: each validation reference once, in dataset order,
    as AlgoPerf detokenizes it."""
    workload = tiny(wmt_dir, eval_batch_size=3)  # 7 examples: the last batch is padded
    model, _ = workload.init_model_fn(0)
    seen = []
    original = workload.summarize
    workload.summarize = lambda sums, per_example: seen.extend(per_example) or original(sums, per_example)
    workload._evaluate_split("validation", 3, model, None)
    pairs = list(data.read_pairs(data.shard_paths(wmt_dir, "validation")))
    assert [reference for _, reference in seen] == [en for _, en in pairs]


def test_attention_projections_are_typed_as_in_algoperf(wmt_dir: Path) -> None:
    workload = tiny(wmt_dir, num_layers=2)
    workload.init_model_fn(0)
    types = workload.model_params_types
    assert types["encoder_layers.1.self_attn.in_proj.weight"] is ParameterType.ATTENTION_QKV
    assert types["decoder_layers.0.multihead_attn.q_proj.weight"] is ParameterType.ATTENTION_Q
    assert types["decoder_layers.0.multihead_attn.kv_proj.weight"] is ParameterType.ATTENTION_KV
    assert types["decoder_layers.1.self_attn.out_proj.weight"] is ParameterType.ATTENTION_OUT
    assert types["shared_embedding.weight"] is ParameterType.EMBEDDING
    assert types["decoder_layers.0.ff.linear1.bias"] is ParameterType.BIAS and types["encoder_norm.weight"] is ParameterType.LAYER_NORM_SCALE


def test_token_cache_is_written_once_then_memory_mapped(wmt_dir: Path, tmp_path: Path) -> None:
    first = tiny(wmt_dir, token_cache_dir=str(tmp_path / "cache"))
    rows = [first.datasets.train[i] for i in range(3)]
    assert len(list((tmp_path / "cache").iterdir())) == 3  # train, validation, test
    second = tiny(wmt_dir, token_cache_dir=str(tmp_path / "cache"))
    assert isinstance(second.datasets.train.pairs.inputs, np.memmap)
    for row, again in zip(rows, (second.datasets.train[i] for i in range(3)), strict=True):
        assert all(torch.equal(row[key], again[key]) for key in row)
    assert [second.datasets.validation[i]["targets"].tolist() for i in range(3)] == [first.datasets.validation[i]["targets"].tolist() for i in range(3)]


def test_synthetic_batch_has_training_shapes(wmt_dir: Path) -> None:
    workload = tiny(wmt_dir)
    batch = workload.synthetic_batch(3)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (3, 48) for k in batch}
    model, _ = workload.init_model_fn(0)
    logits, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, 0, update_batch_norm=True)
    assert logits.shape == (3, 48, 48) and batch["weights"].sum() == 3 * 48


def evaluate(data_dir: Path) -> dict[str, float]:
    workload = tiny(data_dir)
    return workload.eval_model(4, workload.init_model_fn(0)[0], None, 0, 0)  # 2 examples per rank and batch


def test_two_gloo_processes_evaluate_as_one(wmt_dir: Path, tmp_path: Path) -> None:
    """Sharded evaluation counts each example once: the same BLEU, loss and counts as one process."""
    assert_same_results(on_two_gloo_processes(evaluate, wmt_dir, folder=tmp_path), evaluate(wmt_dir))


@pytest.mark.parametrize("break_it, problem", [
    (lambda root: root / "absent", "is not a directory"),
    (lambda root: (root / data.VOCAB_FILE).unlink() or root, "no SentencePiece model"),
    (lambda root: [p.unlink() for p in data.shard_paths(root, "test")] and root, "no test shards"),
    (lambda root: (root / data.VOCAB_FILE).write_bytes(b"not a model") and root, "is not a SentencePiece model"),
    (lambda root: data.shard_paths(root, "train")[0].write_bytes(b"\x05" * 40) and root, "does not start with a TFRecord"),
])
def test_a_broken_data_dir_names_the_layout(tmp_path: Path, break_it, problem: str) -> None:
    root = break_it(make_wmt(tmp_path / "wmt"))
    with pytest.raises(PacerUserError, match=problem) as error:
        tiny(root)
    assert "wmt17_translate-train.tfrecord" in str(error.value) and "dataset_setup.py" in str(error.value)


# --- targets -------------------------------------------------------------------------------

@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_config_matches_algoperf_tables(rules: str, variant: str | None) -> None:
    config = resolve_variant(workload_config("wmt") | {"rules": rules}, variant)
    table = algoperf_targets(rules)["workloads"][config["name"]]
    assert (table["base_workload"], table["variant"], table["metric"], table["direction"]) == ("wmt", variant, "bleu", "max")
    assert (config["validation_target"], config["test_target"]) == (table["validation"], table["test"])
    assert (config["max_runtime_sec"], config["step_hint"]) == (table["max_runtime_sec"], table["step_hint"])
    assert config["eval_period_sec"] == 14 * 60  # algoperf/workloads/wmt/workload.py: eval_period_time_sec


def test_a_bleu_target_outside_0_100_is_refused(wmt_dir: Path) -> None:
    config = workload_config("wmt") | TINY | {"data_dir": str(wmt_dir)}
    config["by_rules"] = config["by_rules"] | {"v1.0": config["by_rules"]["v1.0"] | {"test_target": 229.4143}}
    with pytest.raises(PacerUserError, match="test target 229.414 of bleu is outside"):
        build_workload(config)
