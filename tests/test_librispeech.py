"""The LibriSpeech workloads (Conformer and DeepSpeech) on tiny data written in AlgoPerf's
preprocessed layout: the reader, the models at AlgoPerf's sizes, the CTC loss, greedy CTC
decoding and the word error rate on hand-made examples, one training step and one evaluation
through the real runner for each base workload and variant, data errors, AlgoPerf's targets,
DDP, and the converter from a tiny raw LibriSpeech release."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
import soundfile as sf
import torch
import torch.distributed as dist
from fixed_batch_submission import BATCH_SIZE
from gloo import assert_same_results, on_two_gloo_processes
from librispeech_data import AUDIO_LENGTH, SIZES, TARGET_LENGTH, make_librispeech, write_sentencepiece

from harness.cli import main
from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode, LossType, ParameterType
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.tensor_workload import frozen_batch_norm_statistics
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from workloads.data.librispeech import LAYOUT, LogMelFrontend, SpecAugment, Utterances, convert, split_dataset
from workloads.librispeech_common import CTCLogits, LibriSpeechWorkload, ctc_greedy_decode, word_error_rate
from workloads.librispeech_conformer import LibriSpeechConformer
from workloads.models.conformer import MaskedBatchNorm

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"librispeech_conformer": (None, "attention_temperature", "layernorm", "gelu"),
            "librispeech_deepspeech": (None, "tanh", "no_resnet", "norm_and_spec_aug")}
CASES = [(name, variant) for name, variants in VARIANTS.items() for variant in variants]
TINY = {"librispeech_conformer": {"encoder_dim": 8, "num_heads": 2, "num_layers": 1},
        "librispeech_deepspeech": {"encoder_dim": 8, "num_lstm_layers": 1, "num_ffn_layers": 1}}
"""Tiny models; vocab_size 24 is the tiny SentencePiece model's."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("librispeech")
    return root, make_librispeech(root)


def tiny_workload(name: str, data_dir: Path, variant: str | None = None, full_size: bool = False, **overrides: object) -> LibriSpeechWorkload:
    settings = {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0, "eval_batch_size": 2, "eval_train_size": 4,
                "max_audio_length": AUDIO_LENGTH, "max_target_length": TARGET_LENGTH}
    model = {} if full_size else TINY[name] | {"vocab_size": 24}
    return build_workload(workload_config(name) | settings | model | overrides, variant)


def conformer_parameters(dim: int = 512, layers: int = 4, vocab: int = 1024, post_layer_norm: bool = True) -> int:
    """AlgoPerf's `ConformerEncoderDecoder` (algoperf/workloads/librispeech_conformer/
    librispeech_pytorch/models.py) counted from its constructor: Subsample (3x3 kernels 1->D and
    D->D with biases, Linear(D * 80/4, D)); per block two FeedForwardModules (LayerNorm scale
    and bias, Linear(D, 4D), Linear(4D, D)), MultiHeadedSelfAttention (LayerNorm, in_proj
    Linear(D, 3D), out_proj Linear(D, D), QueryScaler of D/8), ConvolutionBlock (LayerNorm,
    lin1, lin2, lin3 Linear(D, D), depthwise Conv1d D x 5 without bias, BatchNorm scale and
    bias) and the post LayerNorm; then LayerNorm and Linear(D, vocab)."""
    subsample = (9 * dim + dim) + (9 * dim * dim + dim) + (dim * 20 * dim + dim)
    feed_forward = 2 * dim + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    attention = 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + dim // 8
    convolution = 2 * dim + 3 * (dim * dim + dim) + 5 * dim + 2 * dim
    block = 2 * feed_forward + attention + convolution + (2 * dim if post_layer_norm else 0)
    return subsample + layers * block + 2 * dim + (dim * vocab + vocab)


def deepspeech_parameters(dim: int = 512, lstms: int = 6, ffns: int = 3, vocab: int = 1024, decoder_layer_norm: bool = True) -> int:
    """AlgoPerf's `DeepspeechEncoderDecoder` (algoperf/workloads/librispeech_deepspeech/
    librispeech_pytorch/models.py): Subsample as the Conformer's (its LazyLinear sees D * 20
    inputs); per BatchRNN a BatchNorm or LayerNorm (2D) and a bidirectional LSTM of D/2 per
    direction (4 gates x (D/2 x (D + D/2) weights + 2 x D/2 biases), twice); per
    FeedForwardModule a norm (2D) and Linear(D, D); the decoder LayerNorm (absent for
    norm_and_spec_aug) and Linear(D, vocab)."""
    subsample = (9 * dim + dim) + (9 * dim * dim + dim) + (dim * 20 * dim + dim)
    hidden = dim // 2
    lstm = 2 * dim + 2 * (4 * hidden * (dim + hidden) + 2 * 4 * hidden)
    ffn = 2 * dim + dim * dim + dim
    return subsample + lstms * lstm + ffns * ffn + (2 * dim if decoder_layer_norm else 0) + dim * vocab + vocab


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_parameter_count_is_algoperfs(name: str, variant: str | None, data: tuple[Path, dict]) -> None:
    """Conformer 32,321,792 (32,317,696 without post-LayerNorms); DeepSpeech 18,393,600
    (18,392,576 without the decoder LayerNorm). Built at full size on the meta device."""
    workload = tiny_workload(name, data[0], variant, full_size=True)
    with torch.device("meta"):
        model = workload.build_model()
    count = sum(p.numel() for p in model.parameters())
    if name == "librispeech_conformer":
        expected = conformer_parameters(post_layer_norm=variant != "layernorm")
        assert count == expected == (32_317_696 if variant == "layernorm" else 32_321_792)
    else:
        expected = deepspeech_parameters(decoder_layer_norm=variant != "norm_and_spec_aug")
        assert count == expected == (18_392_576 if variant == "norm_and_spec_aug" else 18_393_600)
    assert {"lin.weight", "lin.bias"} <= dict(model.named_parameters()).keys()  # AlgoPerf's output parameters


def test_parameter_types(data: tuple[Path, dict]) -> None:
    workload = tiny_workload("librispeech_conformer", data[0])
    workload.init_model_fn(0)
    types = workload.model_params_types
    assert types["conformers.0.ff1.ln.scale"] is ParameterType.LAYER_NORM_SCALE and types["ln.bias"] is ParameterType.LAYER_NORM_BIAS
    assert types["conformers.0.conv.bn.weight"] is ParameterType.BATCH_NORM_SCALE and types["subsample.conv1.kernel"] is ParameterType.CONV_WEIGHT
    assert types["conformers.0.conv.conv1.weight"] is ParameterType.CONV_WEIGHT and types["lin.weight"] is ParameterType.WEIGHT
    assert types["lin.bias"] is ParameterType.BIAS and types.keys() == workload.param_shapes.keys()


def test_reader_pads_each_utterance(data: tuple[Path, dict]) -> None:
    root, transcripts = data
    validation = split_dataset(root, "validation", AUDIO_LENGTH, TARGET_LENGTH)
    assert len(validation) == SIZES["dev-clean"] + SIZES["dev-other"]
    example = validation[SIZES["dev-clean"]]  # the first of dev-other
    audio = np.load(root / "dev-other" / "19-198-0000_audio.npy")
    targets = np.load(root / "dev-other" / "19-198-0000_targets.npy")
    assert example["audio"].shape == example["audio_paddings"].shape == (AUDIO_LENGTH,)
    np.testing.assert_array_equal(example["audio"][:len(audio)].numpy(), audio)
    assert example["audio_paddings"].sum() == AUDIO_LENGTH - len(audio) and not example["audio"][len(audio):].any()
    assert example["targets"].dtype == torch.int64 and example["targets"][:len(targets)].tolist() == targets.tolist()
    assert example["target_paddings"].tolist() == [0.0] * len(targets) + [1.0] * (TARGET_LENGTH - len(targets))
    workload = tiny_workload("librispeech_conformer", root)
    assert workload.tokenizer.decode(targets.tolist()) == transcripts["dev-other"][0]


def test_frontend_frames_and_paddings() -> None:
    """F = (T - 401) // 160 + 1 frames; a frame is padding only when all its samples are; a
    pure tone peaks in the mel bin of its frequency."""
    audio = 3000 * torch.sin(2 * math.pi * 1000 * torch.arange(4000) / 16000)[None].repeat(2, 1)
    paddings = torch.zeros(2, 4000)
    paddings[1, 2000:] = 1
    features, frame_paddings = LogMelFrontend()(audio, paddings)
    assert features.shape == (2, 23, 80)
    assert frame_paddings[0].sum() == 0 and frame_paddings[1].tolist() == [0.0] * 13 + [1.0] * 10  # frame 13 starts at 2080
    mel = 1127 * np.log1p(np.array([125.0, 1000.0, 7600.0]) / 700)
    expected_bin = round((mel[1] - mel[0]) / ((mel[2] - mel[0]) / 81)) - 1
    standardized = LogMelFrontend().mean + LogMelFrontend().stddev * features[0, 5]  # undo the per-bin normalization
    assert abs(int(standardized.argmax()) - expected_bin) <= 1


def test_spec_augment_masks_within_algoperfs_bounds() -> None:
    """Time masks only inside each utterance, each at most 5% of its frames; frequency masks
    of at most 27 bins each."""
    torch.manual_seed(0)
    features, paddings = torch.ones(4, 400, 80), torch.zeros(4, 400)
    paddings[1, 200:] = 1
    masked = SpecAugment(freq_mask_count=2, time_mask_count=10)(features, paddings)
    masked_frames, masked_bins = (masked == 0).all(dim=2), (masked == 0).all(dim=1)
    assert masked_frames[0].sum() <= 10 * 20 and masked_frames[1].sum() <= 10 * 10 and not masked_frames[1, 200:].any()
    assert 0 < masked_bins.sum(dim=1).max() <= 2 * 27 and masked_frames.any()
    assert torch.equal(SpecAugment(0, 0)(features, paddings), features)


@pytest.mark.parametrize("name", VARIANTS)
def test_an_utterance_does_not_depend_on_its_batch(name: str, data: tuple[Path, dict]) -> None:
    """In evaluation, an utterance's logits are the same alone and batched with others
    (attention, convolutions, LSTMs and norms respect the paddings)."""
    workload = tiny_workload(name, data[0])
    model, state = workload.init_model_fn(0)
    validation = workload.datasets.validation
    batch = workload.device_batch(workload.collate([validation[i] for i in range(len(validation))]))
    with torch.no_grad():
        together = workload.model_fn(model, batch, state, ForwardPassMode.EVAL, 0, update_batch_norm=False)[0]
        for i in range(len(validation)):
            alone = workload.model_fn(model, workload.device_batch(workload.collate([validation[i]])), state, ForwardPassMode.EVAL, 0,
                                      update_batch_norm=False)[0]
            valid = together.paddings[i] == 0
            torch.testing.assert_close(together.logits[i][valid], alone.logits[0][valid], rtol=1e-5, atol=1e-5)


def test_masked_batch_norm_skips_padded_frames_and_freezes_on_request() -> None:
    """Batch statistics of the unpadded frames only; running averages move by 0.001 of them,
    and not at all under `frozen_batch_norm_statistics` (`update_batch_norm=False`)."""
    norm = MaskedBatchNorm(2)
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    paddings = torch.tensor([[0.0, 0.0, 1.0]])
    out = norm(x, paddings)
    torch.testing.assert_close(out[0, :2], torch.tensor([[-1.0, -2.0], [1.0, 2.0]]) / torch.sqrt(torch.tensor([1.0, 4.0]) + 1e-3), rtol=1e-5, atol=1e-6)
    assert not out[0, 2].any()
    torch.testing.assert_close(norm.running_mean, torch.tensor([2.0, 4.0]) * 1e-3)
    with frozen_batch_norm_statistics(norm):
        norm(x, paddings)
    torch.testing.assert_close(norm.running_mean, torch.tensor([2.0, 4.0]) * 1e-3)


def test_greedy_ctc_decoding_by_hand() -> None:
    """Argmax frames 1 1 0 1 2 2 | 0 0 (last two padded) -> 1 1 2; frames 3 3 0 3 1 1 | 2 2
    -> padded frames are blanks -> 3 3 1."""
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 3, 0, 3, 1, 1, 2, 2]])
    logits = torch.nn.functional.one_hot(frames, 4).float() * 5
    paddings = torch.tensor([[0.0] * 6 + [1.0] * 2] * 2)
    assert ctc_greedy_decode(logits, paddings) == [[1, 1, 2], [3, 3, 1]]


def test_word_error_rate_by_hand() -> None:
    """'THE CAT SAT ON A MAT' read as 'THE BAT SAT ON MAT': a substitution and a deletion;
    'DOG RAN' as 'DOG RAN HOME': an insertion; 3 edits over 8 reference words."""
    references = ["THE CAT SAT ON A MAT", "DOG RAN"]
    assert word_error_rate(references, ["THE BAT SAT ON MAT", "DOG RAN HOME"]) == pytest.approx(3 / 8)
    assert word_error_rate(references, references) == 0.0
    assert math.isnan(word_error_rate([], []))


def test_ctc_loss_by_hand() -> None:
    """Two frames of uniform logits over 3 tokens and target [1]: the paths 1 1, 0 1 and 1 0
    each have probability 1/9, so the loss is log 3. The masked example and the one without
    tokens do not count in `n_valid_examples`."""
    workload = LibriSpeechConformer.__new__(LibriSpeechConformer)  # loss_fn needs no data
    logits = CTCLogits(torch.zeros(3, 3, 3, requires_grad=True), torch.tensor([[0.0, 0.0, 1.0]] * 3))
    targets = (torch.tensor([[1, 0], [2, 1], [1, 0]]), torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    loss = workload.loss_fn(targets, logits, torch.tensor([1.0, 0.0, 1.0]))
    per_example = loss["per_example"].detach()
    assert float(per_example[0]) == pytest.approx(math.log(3)) and float(per_example[1]) == 0.0
    assert float(loss["n_valid_examples"]) == 1.0
    loss["summed"].backward()
    assert torch.isfinite(logits.logits.grad).all() and not logits.logits.grad[:, 2].any()  # padded frame: no gradient
    assert float(workload.loss_fn(targets, logits)["n_valid_examples"]) == 2.0
    assert workload.loss_type is LossType.CTC_LOSS


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_one_train_step_and_eval_through_the_runner(name: str, variant: str | None, data: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = data
    workers = int(variant is None)  # the base workloads' batches come from a DataLoader worker
    model = [f"workload.{key}={value}" for key, value in TINY[name].items()]
    record = run_job(compose([
        f"workload={name}", f"variant={variant or 'null'}", "submission=momentum", "submission.module=fixed_batch_submission",
        f"workload.data_dir={root}", f"workload.num_workers={workers}", f"workload.eval_num_workers={workers}", "workload.eval_batch_size=2",
        "workload.eval_train_size=4", f"workload.max_audio_length={AUDIO_LENGTH}", f"workload.max_target_length={TARGET_LENGTH}",
        "workload.vocab_size=24", *model, f"results_root={tmp_path}", "max_steps=1", "eval_every_steps=1", "quiet=true"]))
    assert record["status"] == "step_cap", record.get("error")
    row = record["final"]["last_eval"]
    assert row["examples_seen"] == BATCH_SIZE  # utterances, not the two tensors of an (audio, paddings) pair
    validation = SIZES["dev-clean"] + SIZES["dev-other"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [4, validation, SIZES["test-clean"]]
    for split in ("train", "validation", "test"):
        assert math.isfinite(row[f"{split}/loss"]) and row[f"{split}/wer"] >= 0
    cfg = resolve_variant(workload_config(name), variant)
    assert record["target"]["validation"] == cfg["validation_target"] and record["variant"] == variant


def test_eval_counts_each_utterance_once_and_matches_one_at_a_time(data: tuple[Path, dict]) -> None:
    root, _ = data
    workload = tiny_workload("librispeech_deepspeech", root)
    model, state = workload.init_model_fn(0)
    result = workload.eval_model(2, model, state, 0, 0)
    validation = workload.datasets.validation
    assert result["validation/num_examples"] == len(validation) == 5
    losses, hypotheses, references = [], [], []
    for i in range(len(validation)):
        batch = workload.device_batch(workload.collate([validation[i]]), torch.ones(1))
        with torch.no_grad():
            evaluated = workload.eval_batch(model, state, batch)
        losses.append(float(evaluated.sums["loss"]))
        hypotheses.append(evaluated.per_example[0][0])
        references.append(evaluated.per_example[0][1])
    assert result["validation/loss"] == pytest.approx(sum(losses) / 5, rel=1e-5)
    assert result["validation/wer"] == pytest.approx(word_error_rate(references, hypotheses))
    assert references[0] == data[1]["dev-clean"][0]


@pytest.mark.parametrize("name", VARIANTS)
def test_synthetic_batch_has_algoperf_shapes(name: str, data: tuple[Path, dict]) -> None:
    workload = tiny_workload(name, data[0], max_audio_length=320_000, max_target_length=256)
    batch = workload.synthetic_batch(2, seed=1)
    (audio, audio_paddings), (targets, target_paddings) = batch["inputs"], batch["targets"]
    assert audio.shape == audio_paddings.shape == (2, 320_000) and targets.shape == target_paddings.shape == (2, 256)
    assert (targets * (1 - target_paddings).long() == targets).all() and (targets[target_paddings == 0] > 0).all()
    model, state = workload.init_model_fn(0)
    logits, _ = workload.model_fn(model, batch, state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
    assert logits.logits.shape == (2, 500, 24) and math.isfinite(float(workload.loss_fn(batch["targets"], logits)["summed"].detach()))


@pytest.mark.parametrize(("breakage", "expected"), [
    ("missing", "does not exist"),
    ("no_tokenizer", "spm_model.vocab does not exist"),
    ("bad_tokenizer", "is not a SentencePiece model"),
    ("no_csv", "train-other-500.csv does not exist"),
    ("no_header", "lacks the header ',id'"),
    ("no_audio", "is unreadable"),
    ("too_long", "expected 1-D of at most 8000"),
])
def test_bad_data_dir_is_one_line_naming_the_layout(breakage: str, expected: str, tmp_path: Path) -> None:
    root = tmp_path / "librispeech"
    if breakage != "missing":
        make_librispeech(root)
    if breakage == "no_tokenizer":
        (root / "spm_model.vocab").unlink()
    elif breakage == "bad_tokenizer":
        (root / "spm_model.vocab").write_bytes(b"not a model")
    elif breakage == "no_csv":
        (root / "train-other-500.csv").unlink()
    elif breakage == "no_header":
        (root / "dev-clean.csv").write_text("19-198-0000\n")
    elif breakage == "no_audio":
        (root / "dev-clean" / "19-198-0000_audio.npy").unlink()
    elif breakage == "too_long":
        np.save(root / "dev-clean" / "19-198-0000_audio.npy", np.zeros(AUDIO_LENGTH + 1, np.int64))
    with pytest.raises(PacerUserError) as error:
        tiny_workload("librispeech_conformer", root)
    message = str(error.value)
    assert "\n" not in message and message.startswith("workload librispeech_conformer: ") and expected in message
    assert message.endswith(f"expected {LAYOUT}")


def test_a_tokenizer_larger_than_the_vocabulary_is_a_user_error(data: tuple[Path, dict]) -> None:
    with pytest.raises(PacerUserError, match="has 24 pieces, more than vocab_size=16"):
        tiny_workload("librispeech_deepspeech", data[0], vocab_size=16)


@pytest.mark.parametrize(("name", "settings", "words"), [
    ("librispeech_conformer", {"activation": "relu"}, "activation 'relu' is not one of swish, gelu"),
    ("librispeech_conformer", {"encoder_dim": 10, "num_heads": 4}, "encoder_dim=10 is not divisible by num_heads=4"),
    ("librispeech_deepspeech", {"activation": "gelu"}, "activation 'gelu' is not one of relu, tanh"),
    ("librispeech_deepspeech", {"residual": "yes"}, "residual='yes' must be true or false"),
])
def test_a_bad_setting_is_one_line_before_any_data(name: str, settings: dict[str, object], words: str, tmp_path: Path) -> None:
    with pytest.raises(PacerUserError) as error:
        build_workload(workload_config(name) | {"data_dir": str(tmp_path / "none")} | settings)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {name}: {words}"), message


@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_config_has_algoperfs_targets(rules: str, name: str, variant: str | None) -> None:
    """Targets, budget and step hint from the tables the scoring ships; the eval period is
    AlgoPerf's module's `24 * 60` in both versions."""
    table = json.loads((REPO / "harness" / "data" / f"algoperf_targets_{rules}.json").read_text())["workloads"]
    row = table[name if variant is None else f"{name}_{variant}"]
    cfg = resolve_variant(workload_config(name) | {"rules": rules}, variant)
    assert (cfg["validation_target"], cfg["test_target"]) == (row["validation"], row["test"])
    assert (cfg["max_runtime_sec"], cfg["step_hint"], cfg["eval_period_sec"]) == (row["max_runtime_sec"], row["step_hint"], 24 * 60)
    assert row["metric"] == LibriSpeechWorkload.target_metric_name and row["direction"] == "min"
    assert cfg["eval_batch_size"] == (128 if variant == "norm_and_spec_aug" else 256)


def set_running_means(model: torch.nn.Module, value: float) -> None:
    for norm in (m for m in model.modules() if isinstance(m, MaskedBatchNorm)):
        norm.running_mean.fill_(value)


def evaluate(root: Path) -> dict[str, float]:
    """With batch-norm running means 0 on rank 0 and 1 on rank 1 (0.5 without DDP): the workload
    averages them over the ranks before evaluating."""
    workload = tiny_workload("librispeech_conformer", root)
    model, state = workload.init_model_fn(0)
    set_running_means(model, float(dist.get_rank()) if dist.is_initialized() else 0.5)
    return workload.eval_model(4, model, state, 0, 0)  # 2 utterances per rank per batch


@pytest.mark.slow  # two spawned processes import torch: most of this file's time on a busy machine
def test_two_gloo_processes_evaluate_as_one(data: tuple[Path, dict], tmp_path: Path) -> None:
    """Each rank evaluates its share of the utterances, with the batch-norm statistics
    averaged over the ranks; the gathered WER and the summed loss are those of one process."""
    root, _ = data
    assert_same_results(on_two_gloo_processes(evaluate, root, folder=tmp_path), evaluate(root), nan_ok=True)


RAW_UTTERANCES = {"train-clean-100": {"19-198": ["THE CAT SAT ON A MAT", "A DOG RAN HOME"], "26-495": ["THE DOG AND THE CAT", "ON A MAT AT HOME"]},
                  "dev-clean": {"84-121123": ["A CAT RAN", "THE MAT AND THE DOG SAT"]}}
"""Per raw subset, per `<speaker>-<chapter>`, the transcripts of the utterances kept."""


def write_raw_librispeech(root: Path) -> dict[str, np.ndarray]:
    """`root/LibriSpeech/` in the raw release's layout: RAW_UTTERANCES as short synthetic
    FLACs, plus utterances AlgoPerf drops (a transcript of 257 characters, 320,001 samples, a
    missing FLAC); returns the int16 samples of each kept utterance by id."""
    rng = np.random.default_rng(0)
    kept = {}
    for subset, chapters in RAW_UTTERANCES.items():
        for name, texts in chapters.items():
            speaker, chapter = name.split("-")
            folder = root / "LibriSpeech" / subset / speaker / chapter
            folder.mkdir(parents=True)
            lines = {f"{name}-{i:04d}": text for i, text in enumerate(texts)}
            kept |= {utterance: rng.integers(-2**15, 2**15, int(rng.integers(1600, 4000)), dtype=np.int16) for utterance in lines}
            dropped = {f"{name}-0090": "A" * 257, f"{name}-0091": "THE CAT", f"{name}-0092": "NO AUDIO"}
            audio = kept | {f"{name}-0090": np.zeros(1600, np.int16), f"{name}-0091": np.zeros(320_001, np.int16)}
            for utterance in [*lines, f"{name}-0090", f"{name}-0091"]:
                sf.write(folder / f"{utterance}.flac", audio[utterance], 16_000, subtype="PCM_16")
            (folder / f"{name}.trans.txt").write_text("".join(f"{u} {t}\n" for u, t in (lines | dropped).items()))
    return kept


def test_convert_raw_librispeech(tmp_path: Path) -> None:
    kept = write_raw_librispeech(tmp_path / "raw")
    dest = tmp_path / "converted"
    assert convert(tmp_path / "raw", dest, vocab_size=24, jobs=2) == {"train-clean-100": 4, "dev-clean": 2}
    tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(dest / "spm_model.vocab"))
    assert tokenizer.vocab_size() == 24 and not list(dest.rglob("*.partial"))
    for subset, chapters in RAW_UTTERANCES.items():
        ids = [f"{name}-{i:04d}" for name in sorted(chapters) for i in range(len(chapters[name]))]
        assert (dest / f"{subset}.csv").read_text() == ",id\n" + "".join(f"{row},{u}\n" for row, u in enumerate(ids))
        assert sorted(p.name for p in (dest / subset).iterdir()) == sorted(f"{u}_{kind}.npy" for u in ids for kind in ("audio", "targets"))
        for utterance, text in zip(ids, [t for name in sorted(chapters) for t in chapters[name]], strict=True):
            audio, targets = np.load(dest / subset / f"{utterance}_audio.npy"), np.load(dest / subset / f"{utterance}_targets.npy")
            assert audio.dtype == np.int64 and np.array_equal(audio, kept[utterance])
            assert targets.dtype == np.int32 and targets[-1] == tokenizer.eos_id() and tokenizer.decode(targets[:-1].tolist()) == text
    example = Utterances(dest, "dev-clean", max_audio_length=4000, max_target_length=32)[1]
    assert torch.equal(example["audio"][:len(kept["84-121123-0001"])], torch.from_numpy(kept["84-121123-0001"].astype(np.float32)))
    assert tokenizer.decode(example["targets"][example["target_paddings"] == 0][:-1].tolist()) == "THE MAT AND THE DOG SAT"


def test_convert_keeps_an_existing_tokenizer_and_accepts_the_librispeech_folder(tmp_path: Path) -> None:
    write_raw_librispeech(tmp_path / "raw")
    dest = tmp_path / "converted"
    dest.mkdir()
    tokenizer = write_sentencepiece(dest / "spm_model.vocab", [" ".join(t) for chapters in RAW_UTTERANCES.values() for t in chapters.values()] * 5)
    model = (dest / "spm_model.vocab").read_bytes()
    assert convert(tmp_path / "raw" / "LibriSpeech", dest, jobs=1) == {"train-clean-100": 4, "dev-clean": 2}
    assert (dest / "spm_model.vocab").read_bytes() == model
    assert tokenizer.decode(np.load(dest / "dev-clean" / "84-121123-0000_targets.npy")[:-1].tolist()) == "A CAT RAN"


def test_convert_of_a_source_without_librispeech_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "convert", "librispeech", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"pacer: error: pacer data convert librispeech: {tmp_path} holds no LibriSpeech subset"), err
