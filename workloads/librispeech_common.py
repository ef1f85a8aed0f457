"""What AlgoPerf's two LibriSpeech workloads share (algoperf/workloads/librispeech_conformer/
workload.py and librispeech_pytorch/workload.py, which the DeepSpeech workload subclasses):
data, batches, the CTC loss, greedy CTC decoding and the word error rate.

A batch is AlgoPerf's: `inputs` = (audio (B, T) float32 samples, audio paddings (B, T)),
`targets` = (token ids (B, L) int64, target paddings (B, L)), paddings 1.0 past an
utterance's end, T = 320,000 and L = 256 (`max_audio_length`, `max_target_length`), and for
evaluation `weights` (B,): 0 for the base's padding utterances. The model returns
`CTCLogits(logits (B, T', vocab), paddings (B, T'))`, which `loss_fn` takes as `logits_batch`
with `batch["targets"]` as `label_batch` and `batch["weights"]` as `mask_batch`.

Metric: word error rate of greedy CTC decoding, detokenized by the data's SentencePiece
model, over all the split's utterances (AlgoPerf's `compute_wer`: total word edits / total
reference words), computed by jiwer.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jiwer
import sentencepiece
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from harness.core.checks import finite_number, flag, whole_number
from harness.core.errors import PacerUserError
from harness.core.spec import (
    Batch,
    ForwardPassMode,
    LossOutput,
    LossType,
    MetricDirection,
    ModelAuxiliaryState,
    ParameterContainer,
    ParameterType,
    Tensor,
    parameter_type,
)
from harness.plugins.loader_workload import BatchEval, LoaderWorkload, SplitDatasets, fixed_subset
from workloads.data.librispeech import (
    LAYOUT,
    MAX_AUDIO_LENGTH,
    MAX_TARGET_LENGTH,
    SUBSETS,
    DataLayoutError,
    Utterances,
    load_tokenizer,
    split_dataset,
)
from workloads.models.conformer import ConvSubsampling, LayerNorm

BLANK_ID = 0
"""CTC's blank: SentencePiece's <unk> id, which transcripts never hold."""


class CTCLogits(NamedTuple):
    """The model's output: (B, T', vocab) logits and (B, T') paddings (1.0 past the end)."""

    logits: Tensor
    paddings: Tensor

    def float(self) -> CTCLogits:
        """float32 logits (the base's `model_fn` upcasts bf16 outputs)."""
        return CTCLogits(self.logits.float(), self.paddings)


def ctc_greedy_decode(logits: Tensor, paddings: Tensor) -> list[list[int]]:
    """Per utterance, the token ids of its most likely frames with repeats collapsed and
    blanks (0) dropped; padded frames count as blanks (AlgoPerf's `greedy_decode`).

    Args:
        logits: (B, T, vocab).
        paddings: (B, T), 1.0 for padded frames.
    """
    frames = logits.argmax(dim=-1) * (paddings == 0)
    previous = F.pad(frames[:, :-1], (1, 0), value=-1)
    keep = ((frames != previous) & (frames != BLANK_ID)).cpu()
    frames = frames.cpu()
    return [row[kept].tolist() for row, kept in zip(frames, keep, strict=True)]


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Word edits (substitutions, deletions, insertions) summed over utterances, divided by
    the reference words summed over utterances; words split at whitespace. NaN for no
    utterances."""
    if not references:
        return float("nan")
    return float(jiwer.wer(list(references), list(hypotheses)))


class LibriSpeechWorkload(LoaderWorkload):
    """Keyword arguments are the config's keys: the model's (by the subclass), those below,
    and those of `LoaderWorkload`. `use_specaug`, `freq_mask_count`, `time_mask_count`:
    SpecAugment during training; `max_audio_length`, `max_target_length`: the padded length
    of every utterance (AlgoPerf's 320,000 samples and 256 tokens; smaller only for tests)."""

    target_metric_name = "wer"
    target_metric_direction = MetricDirection.MINIMIZE

    def __init__(self, *, vocab_size: int = 1024, encoder_dim: int = 512, dropout_rate: float = 0.1, use_specaug: bool = True,
                 freq_mask_count: int = 2, time_mask_count: int = 10, max_audio_length: int = MAX_AUDIO_LENGTH,
                 max_target_length: int = MAX_TARGET_LENGTH, **common):
        self.vocab_size, self.encoder_dim = whole_number("vocab_size", vocab_size, minimum=2), whole_number("encoder_dim", encoder_dim)
        self.dropout_rate, self.use_specaug = finite_number("dropout_rate", dropout_rate, 0.0), flag("use_specaug", use_specaug)
        self.freq_mask_count = whole_number("freq_mask_count", freq_mask_count, minimum=0)
        self.time_mask_count = whole_number("time_mask_count", time_mask_count, minimum=0)
        self.max_audio_length = whole_number("max_audio_length", max_audio_length, minimum=401)  # one 25 ms frame
        self.max_target_length = whole_number("max_target_length", max_target_length)
        self._tokenizer: sentencepiece.SentencePieceProcessor | None = None
        super().__init__(**common)

    def _user_error(self, problem: object) -> PacerUserError:
        return PacerUserError(f"workload {self.name}: {problem}; expected {LAYOUT}")

    # --- data ---------------------------------------------------------------------------

    def check_data(self) -> None:
        """The tokenizer loads and fits `vocab_size`, every subset's CSV is there, and the
        first validation utterance reads."""
        if not self.data_dir.is_dir():
            raise self._user_error(f"data_dir {self.data_dir} does not exist")
        try:
            _ = self.tokenizer
            for subsets in SUBSETS.values():
                for subset in subsets:
                    Utterances(self.data_dir, subset, self.max_audio_length, self.max_target_length)
            first = Utterances(self.data_dir, SUBSETS["validation"][0], self.max_audio_length, self.max_target_length)
            if not len(first):
                raise DataLayoutError(f"{SUBSETS['validation'][0]}.csv lists no utterances")
            first[0]
        except DataLayoutError as e:
            raise self._user_error(e) from None

    @property
    def tokenizer(self) -> sentencepiece.SentencePieceProcessor:
        """The data's SentencePiece model (loaded on first use).

        Raises:
            DataLayoutError: it is missing, unreadable, or has more pieces than `vocab_size`.
        """
        if self._tokenizer is None:
            tokenizer = load_tokenizer(self.data_dir)
            if tokenizer.get_piece_size() > self.vocab_size:
                raise DataLayoutError(f"the SentencePiece model has {tokenizer.get_piece_size()} pieces, more than vocab_size={self.vocab_size}")
            self._tokenizer = tokenizer
        return self._tokenizer

    def make_datasets(self) -> SplitDatasets:
        """train-clean-100+360+other-500, dev-clean+dev-other, test-clean; eval_train a fixed
        subset of train drawn by `dataset_seed`."""
        train, validation, test = (split_dataset(self.data_dir, split, self.max_audio_length, self.max_target_length) for split in SUBSETS)
        return SplitDatasets(train=train, eval_train=Subset(train, fixed_subset(len(train), self.eval_train_size, self.dataset_seed)),
                             validation=validation, test=test)

    def device_batch(self, host_batch: Mapping[str, Tensor], weights: Tensor | None = None) -> Batch:
        """Collated `Utterances` examples -> `inputs` and `targets` pairs on the device (and `weights` (B,) if given)."""
        on_device = {key: value.to(self.device, non_blocking=True) for key, value in host_batch.items()}
        batch: Batch = {"inputs": (on_device["audio"], on_device["audio_paddings"]), "targets": (on_device["targets"], on_device["target_paddings"])}
        if weights is not None:
            batch["weights"] = weights.to(self.device, dtype=torch.float32, non_blocking=True)
        return batch

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """`batch_size` utterances of noise filling 50-100% of `max_audio_length` samples, with
        1 to `max_target_length` random token ids: AlgoPerf's training shapes."""
        generator = torch.Generator().manual_seed(seed)
        audio = torch.randint(-2 ** 15, 2 ** 15, (batch_size, self.max_audio_length), generator=generator).float()
        audio_lengths = torch.randint(self.max_audio_length // 2, self.max_audio_length + 1, (batch_size, 1), generator=generator)
        target_lengths = torch.randint(1, self.max_target_length + 1, (batch_size, 1), generator=generator)
        targets = torch.randint(1, self.vocab_size, (batch_size, self.max_target_length), generator=generator)
        audio_paddings = (torch.arange(self.max_audio_length) >= audio_lengths).float()
        target_paddings = (torch.arange(self.max_target_length) >= target_lengths).float()
        host = {"audio": audio * (1 - audio_paddings), "audio_paddings": audio_paddings, "targets": targets * (1 - target_paddings).long(),
                "target_paddings": target_paddings}
        return self.device_batch(host)

    # --- model and loss -----------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The speech model: (audio, paddings) -> (logits, paddings)."""

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        """The harness's guess by owning module, except the models' own LayerNorms (`scale`,
        `bias`: layer-norm parameters) and the subsampling kernels (convolution weights)."""
        model = self._built_model()
        types = {}
        for name, _ in model.named_parameters():
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner)
            if isinstance(module, LayerNorm):
                types[name] = ParameterType.LAYER_NORM_SCALE if leaf == "scale" else ParameterType.LAYER_NORM_BIAS
            elif isinstance(module, ConvSubsampling) and leaf == "kernel":
                types[name] = ParameterType.CONV_WEIGHT
            else:
                types[name] = parameter_type(model, name)
        return types

    def forward(self, model: nn.Module, batch: Batch) -> CTCLogits:
        return CTCLogits(*model(*batch["inputs"]))

    @property
    def loss_type(self) -> LossType:
        return LossType.CTC_LOSS

    def loss_fn(self, label_batch: tuple[Tensor, Tensor], logits_batch: tuple[Tensor, Tensor], mask_batch: Tensor | None = None,
                label_smoothing: float = 0.0) -> LossOutput:
        """CTC loss (blank 0, summed over each utterance's tokens) of `logits_batch`
        (logits (B, T', V), paddings (B, T')) against `label_batch` (ids (B, L), paddings
        (B, L)); `mask_batch` (B,) weighs the utterances. `n_valid_examples` counts the
        weighted utterances with at least one token, at least 1 (AlgoPerf's `loss_fn`).
        Label smoothing does not apply to CTC and is ignored, as in AlgoPerf."""
        targets, target_paddings = label_batch
        logits, logit_paddings = logits_batch
        log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # (T', B, V)
        input_lengths, target_lengths = (1 - logit_paddings).sum(dim=1).long(), (1 - target_paddings).sum(dim=1).long()
        per_example = F.ctc_loss(log_probs, targets.long(), input_lengths, target_lengths, blank=BLANK_ID, reduction="none")
        counted = (target_lengths > 0).to(per_example.dtype)
        if mask_batch is not None:
            per_example = per_example * mask_batch
            counted = counted * (mask_batch != 0)
        return {"summed": per_example.sum(), "n_valid_examples": counted.sum().clamp(min=1.0), "per_example": per_example}

    # --- evaluation ---------------------------------------------------------------------

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        """Summed CTC loss and counted utterances; per utterance its (hypothesis, reference) text."""
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        targets, target_paddings = batch["targets"]
        weights = batch["weights"]
        sums = {"loss": self.loss_fn(batch["targets"], logits, weights)["summed"],
                "utterances": (weights * ((1 - target_paddings).sum(dim=1) > 0)).sum()}
        lengths = (1 - target_paddings).sum(dim=1).long().tolist()
        references = [self.tokenizer.decode(row[:n]) for row, n in zip(targets.tolist(), lengths, strict=True)]
        hypotheses = [self.tokenizer.decode(ids) for ids in ctc_greedy_decode(*logits)]
        return BatchEval(sums=sums, per_example=list(zip(hypotheses, references, strict=True)))

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        """`loss`: mean CTC loss per utterance (AlgoPerf's `ctc_loss`); `wer`."""
        hypotheses, references = zip(*per_example, strict=True) if per_example else ((), ())
        return {"loss": sums["loss"] / max(sums["utterances"], 1.0), "wer": word_error_rate(references, hypotheses)}
