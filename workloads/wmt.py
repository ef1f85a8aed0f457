"""German-to-English translation on WMT17 (validation and test on WMT14) with an
encoder-decoder Transformer: AlgoPerf's `wmt` workload and its variants `wmt_post_ln`,
`wmt_attention_temp`, `wmt_glu_tanh` (source: `algoperf/workloads/wmt/workload.py`,
`.../wmt_pytorch/workload.py`).

Targets, budget, eval period and step hint per AlgoPerf version are in
configs/workload/wmt.yaml; the metric is corpus BLEU (sacrebleu, 13a tokenization,
exponential smoothing) of the beam-search translations (beam 4, length penalty alpha 0.6,
up to 256 tokens) against the references, both detokenized from their SentencePiece ids.
Training rows pack several sentence pairs into 256 tokens per side, as AlgoPerf's pipeline
does; the loss is per-token cross-entropy with padding masked by `batch["weights"]` (B, L).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import sacrebleu
import sentencepiece
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.core.checks import check_choice, finite_number, flag, whole_number
from harness.core.errors import PacerUserError
from harness.core.spec import (
    Batch,
    ForwardPassMode,
    LossOutput,
    MetricDirection,
    ModelAuxiliaryState,
    ParameterContainer,
    ParameterType,
    Tensor,
)
from harness.plugins.loader_workload import BatchEval, LoaderWorkload, SplitDatasets, fixed_subset
from workloads.data import wmt as data
from workloads.models.wmt import ACTIVATIONS, EOS_ID, Transformer, beam_search, reorder_cache

PACKED_KEYS = ("inputs_position", "inputs_segmentation", "targets_position", "targets_segmentation")
ATTENTION_TYPES = {"in_proj": ParameterType.ATTENTION_QKV, "q_proj": ParameterType.ATTENTION_Q,
                   "kv_proj": ParameterType.ATTENTION_KV, "out_proj": ParameterType.ATTENTION_OUT}
"""The kinds of the attention projections, by module name (AlgoPerf's `pytorch_param_types`)."""


class Wmt(LoaderWorkload):
    target_metric_name = "bleu"
    target_metric_direction = MetricDirection.MAXIMIZE

    def __init__(self, *, vocab_size: int = 32_000, d_model: int = 1024, num_heads: int = 16, d_hid: int = 1024,
                 num_layers: int = 6, activation: str = "relu", glu: bool = False, pre_ln: bool = True,
                 attention_temp: float = 1.0, dropout_rate: float = 0.1, max_length: int = 256, beam_size: int = 4,
                 length_penalty: float = 0.6, max_decode_length: int = 256, token_cache_dir: str | None = None, **common):
        """`token_cache_dir`: where to keep the tokenized splits between runs (None: tokenize
        at every start)."""
        self.vocab_size, self.d_model = whole_number("vocab_size", vocab_size, minimum=3), whole_number("d_model", d_model)
        self.num_heads, self.d_hid, self.num_layers = whole_number("num_heads", num_heads), whole_number("d_hid", d_hid), whole_number("num_layers", num_layers)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.activation, self.glu, self.pre_ln = check_choice("activation", activation, tuple(ACTIVATIONS)), flag("glu", glu), flag("pre_ln", pre_ln)
        self.attention_temp = finite_number("attention_temp", attention_temp, 0.0, exclusive=True)
        self.dropout_rate = finite_number("dropout_rate", dropout_rate, 0.0)
        self.max_length, self.beam_size = whole_number("max_length", max_length), whole_number("beam_size", beam_size)
        self.length_penalty = finite_number("length_penalty", length_penalty, 0.0)
        self.max_decode_length = whole_number("max_decode_length", max_decode_length, minimum=2)
        self.token_cache_dir = None if token_cache_dir is None else Path(token_cache_dir).expanduser()
        self._tokenizer: sentencepiece.SentencePieceProcessor | None = None
        super().__init__(**common)

    def check_targets(self) -> None:
        """Raise ValueError for a BLEU target outside [0, 100] (e.g. AlgoPerf PyTorch's
        `wmt_attention_temp` test target 229.4143, a typo of 29.4143)."""
        for split, value in (("validation", self.validation_target_value), ("test", self.test_target_value)):
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{split} target {value:g} of bleu is outside [0, 100]")

    def check_data(self) -> None:
        problem = data.layout_problem(self.data_dir)
        if problem:
            raise PacerUserError(f"workload {self.name}: {problem}; expected {data.LAYOUT}")

    @property
    def tokenizer(self) -> sentencepiece.SentencePieceProcessor:
        """AlgoPerf's SentencePiece model from `data_dir` (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(self.data_dir / data.VOCAB_FILE))
            if self._tokenizer.get_piece_size() > self.vocab_size:
                raise PacerUserError(f"workload {self.name}: the SentencePiece model has {self._tokenizer.get_piece_size()} "
                                     f"pieces, more than vocab_size={self.vocab_size}")
        return self._tokenizer

    # --- data ---------------------------------------------------------------------------

    def make_datasets(self) -> SplitDatasets:
        """Tokenizes every split (minutes for the 5.9M WMT17 pairs, unless `token_cache_dir`
        has them), drops pairs longer than `max_length`, packs the training pairs in an order
        drawn from `dataset_seed`."""
        splits = {split: data.tokenized_split(self.data_dir, split, self.tokenizer, self.vocab_size, self.token_cache_dir)
                  for split in data.SOURCES}
        kept = {split: data.short_enough(pairs, self.max_length) for split, pairs in splits.items()}
        train = splits["train"]
        order = kept["train"][torch.randperm(len(kept["train"]), generator=torch.Generator().manual_seed(self.dataset_seed)).numpy()]
        eval_train = kept["train"][fixed_subset(len(kept["train"]), self.eval_train_size, self.dataset_seed + 1)]
        return SplitDatasets(
            train=data.PackedExamples(train, data.pack(train, order, self.max_length), self.max_length),
            eval_train=data.PaddedExamples(train, eval_train, self.max_length),
            validation=data.PaddedExamples(splits["validation"], kept["validation"], self.max_length),
            test=data.PaddedExamples(splits["test"], kept["test"], self.max_length))

    @property
    def num_train_examples(self) -> int:
        """Sentence pairs of the training split, as AlgoPerf counts them (5,906,184 for WMT17,
        long ones included); the training stream's rows pack several of them."""
        train = self.datasets.train
        assert isinstance(train, data.PackedExamples)
        return len(train.pairs)

    def device_batch(self, host_batch: Mapping[str, Tensor], weights: Tensor | None = None) -> Batch:
        """int32 (B, L) host tensors -> int64 on the device, plus `weights` float32 (B, L):
        1 for a real target token (AlgoPerf's `targets > 0`), times the example's weight."""
        batch = {key: value.to(self.device, dtype=torch.long, non_blocking=True) for key, value in host_batch.items()}
        token_weights = (batch["targets"] > 0).float()
        if weights is not None:
            token_weights = token_weights * weights.to(self.device)[:, None]
        return batch | {"weights": token_weights}

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """`batch_size` rows of two packed 128-token pairs each (random ids, EOS last), the
        shapes of AlgoPerf's training batches: (batch_size, max_length) per key."""
        generator = torch.Generator().manual_seed(seed)
        half = self.max_length // 2
        positions = torch.arange(self.max_length) % half
        segments = 1 + torch.arange(self.max_length) // half
        batch: dict[str, Tensor] = {}
        for key in ("inputs", "targets"):
            tokens = torch.randint(EOS_ID + 1, self.vocab_size, (batch_size, self.max_length), generator=generator)
            tokens[:, positions == half - 1] = EOS_ID
            batch |= {key: tokens, f"{key}_position": positions.expand(batch_size, -1), f"{key}_segmentation": segments.expand(batch_size, -1)}
        return self.device_batch(batch)

    # --- model --------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return Transformer(vocab_size=self.vocab_size, d_model=self.d_model, num_heads=self.num_heads, d_hid=self.d_hid,
                           num_layers=self.num_layers, activation=self.activation, glu=self.glu, pre_ln=self.pre_ln,
                           attention_temp=self.attention_temp, max_len=self.max_length, dropout=self.dropout_rate)

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        """As the base infers them, except attention projections: QKV, Q, KV and OUT, as
        AlgoPerf's `algoperf/param_utils.py` types them."""
        types = super().model_params_types
        for name in types:
            module = name.rsplit(".", 2)[-2] if "." in name else ""
            types[name] = ATTENTION_TYPES.get(module, types[name])
        return types

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """(B, L, vocab_size) logits of each next target token; packed rows pass their
        positions and segment ids."""
        return model(batch["inputs"], batch["targets"], **{key: batch.get(key) for key in PACKED_KEYS})

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Per-token cross-entropy of (B, L, V) logits against (B, L) token ids, with label
        smoothing; `mask_batch` (B, L) weighs the tokens (0 for padding), and
        `n_valid_examples` counts the weighted tokens (AlgoPerf's
        `compute_weighted_cross_entropy`).

        Raises:
            ValueError: logits are not one dimension more than the labels.
        """
        if logits_batch.ndim != label_batch.ndim + 1:
            raise ValueError(f"logits of shape {tuple(logits_batch.shape)} do not match labels of shape {tuple(label_batch.shape)}")
        per_token = F.cross_entropy(logits_batch.movedim(-1, 1), label_batch, reduction="none", label_smoothing=label_smoothing)
        if mask_batch is None:
            mask_batch = torch.ones_like(per_token)
        per_token = torch.where(mask_batch.bool(), per_token, 0.0)
        return {"summed": per_token.sum(), "n_valid_examples": mask_batch.sum(), "per_example": per_token}

    # --- evaluation ---------------------------------------------------------------------

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        """Summed token loss (no label smoothing), correct tokens and token count; per example
        the (hypothesis, reference) strings."""
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        weights, targets = batch["weights"], batch["targets"]
        loss = self.loss_fn(targets, logits, weights)["summed"]
        correct = ((logits.argmax(-1) == targets) * weights).sum()
        hypotheses = self.translate(params, batch["inputs"])
        per_example = [(self.detokenize(h), self.detokenize(r)) for h, r in zip(hypotheses.tolist(), targets.tolist(), strict=True)]
        return BatchEval(sums={"loss": loss, "accuracy": correct, "denominator": weights.sum()}, per_example=per_example)

    def translate(self, params: ParameterContainer, inputs: Tensor) -> Tensor:
        """Beam-search translations (B, max_decode_length - 1) of inputs (B, L) (AlgoPerf's
        `predict_step`)."""
        model = cast(Transformer, params.module if isinstance(params, DistributedDataParallel) else params)
        model.eval()
        with self._autocast():
            memory = model.encode(inputs).repeat_interleave(self.beam_size, 0)
            sources = inputs.repeat_interleave(self.beam_size, 0)
            cache: dict[str, Tensor] = {}

            def step(tokens: Tensor, order: Tensor) -> Tensor:
                reorder_cache(cache, order)
                return model.decode_step(tokens, memory, sources, cache)

            return beam_search(step, len(inputs), self.beam_size, self.length_penalty, EOS_ID, self.max_decode_length, inputs.device)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of the ids up to and including the first EOS; AlgoPerf's `_decode_tokens`
        keeps only the first id of a sequence without EOS, and so does this."""
        array = np.asarray(ids)
        return self.tokenizer.decode(array[: int(np.argmax(array == EOS_ID)) + 1].tolist())

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        hypotheses, references = zip(*per_example, strict=True) if per_example else ((), ())
        tokens = max(sums["denominator"], 1.0)
        return {"loss": sums["loss"] / tokens, "accuracy": sums["accuracy"] / tokens,
                "bleu": corpus_bleu(list(hypotheses), list(references))}


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) of detokenized sentences, one reference each: sacrebleu's
    defaults, which AlgoPerf's `bleu.corpus_bleu` re-implements (13a, exp smoothing)."""
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)
