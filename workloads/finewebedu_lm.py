"""FineWeb-Edu language modelling by a 253M-parameter decoder-only Transformer: AlgoPerf
v1.0's `finewebedu_lm` workload.

Source: mlcommons/algorithmic-efficiency `algoperf/workloads/finewebedu_lm/` (`workload.py`,
`finewebedu_lm_pytorch/{workload,models}.py` at commit 4c37f2aa208f62205aaaeb2ea16e44b0d2656f60;
`input_pipeline.py` at a6ce1da76d8560fd7d5d0a0cf768dd396617cee3), the newest stored copies;
the released v1.0 files may differ. Targets, budget, eval period and step hint are in
configs/workload/finewebedu_lm.yaml (`by_rules.v1.0`; the workload does not exist in v0.6).

Data (see `LAYOUT` and `workloads.data.finewebedu_lm`): GPT-2 tokens of FineWeb-Edu
sample-10BT, converted once from AlgoPerf's `dataset_setup.py` output into one flat uint16
array per split. A split's stream is cut into sequences of `seq_len + 1` tokens; an example's
inputs are its first `seq_len` tokens and its targets the last `seq_len`. Training samples
the train split's sequences; the eval-train split is its first `eval_train_size` sequences
and the validation split the first `validation_size` of `val`. There is no test split.

Loss: next-token cross-entropy, one term per target token (`per_example` is (B, T)), masked
by `weights` (B, T); evaluation padding has weight 0 on all its tokens. Metric: perplexity
`ppl` = exp(summed token loss / number of real tokens) over the whole split (minimise).

Differences from AlgoPerf, on purpose: training draws a fresh permutation of all train
sequences each epoch (AlgoPerf: a 1,000-sequence shuffle buffer over the stream); eval-train
and validation are exactly `eval_train_size` and `validation_size` sequences (AlgoPerf
evaluates whole batches of `eval_batch_size`, up to 255 sequences more, repeating the split
if it is shorter); the test split is empty, so `test/ppl` is not reported (AlgoPerf reports
ppl 1.0) and the test target is never met (AlgoPerf counts it met).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.core.checks import finite_number, flag, whole_number
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
from harness.plugins.loader_workload import BatchEval, LoaderWorkload, SplitDatasets
from workloads.data.finewebedu_lm import SPLITS, TOKEN_DTYPE, TokenSequences
from workloads.models.finewebedu_lm import DecoderOnlyTransformer

LAYOUT = ("data_dir/train.npy and data_dir/val.npy, each a flat uint16 array of GPT-2 token ids, written by "
          "`pacer data convert finewebedu_lm ALGOPERF_DIR data_dir` from AlgoPerf's dataset_setup.py --finewebedu "
          "folders ALGOPERF_DIR/train and ALGOPERF_DIR/val")

ATTENTION_PROJECTIONS = {"w_qkv": ParameterType.ATTENTION_QKV, "w_out": ParameterType.ATTENTION_OUT}


def perplexity(mean_loss: float) -> float:
    """exp(mean token loss in nats); inf where exp overflows, NaN for a NaN loss."""
    return math.inf if mean_loss >= math.log(np.finfo(np.float64).max) else math.exp(mean_loss)


class FinewebeduLm(LoaderWorkload):
    target_metric_name = "ppl"
    target_metric_direction = MetricDirection.MINIMIZE

    def __init__(self, *, vocab_size: int = 50257, seq_len: int = 1024, width: int = 1024, num_layers: int = 12, num_heads: int = 8,
                 mlp_dim: int = 4096, rmsnorm_epsilon: float = 1e-6, qknorm_epsilon: float = 1e-6, tie_embeddings: bool = True,
                 validation_size: int = 100_000, validation_target: float, test_target: float | None = None, **common):
        """`test_target` must be None: AlgoPerf's finewebedu_lm has no test split."""
        self.vocab_size, self.seq_len = whole_number("vocab_size", vocab_size, minimum=2), whole_number("seq_len", seq_len, minimum=2)
        self.width, self.num_layers, self.num_heads = whole_number("width", width), whole_number("num_layers", num_layers), whole_number("num_heads", num_heads)
        self.mlp_dim, self.validation_size = whole_number("mlp_dim", mlp_dim), whole_number("validation_size", validation_size)
        self.rmsnorm_epsilon = finite_number("rmsnorm_epsilon", rmsnorm_epsilon, 0.0, exclusive=True)
        self.qknorm_epsilon = finite_number("qknorm_epsilon", qknorm_epsilon, 0.0)
        self.tie_embeddings = flag("tie_embeddings", tie_embeddings)
        if width % num_heads or (width // num_heads) % 2:
            raise ValueError(f"width={width} / num_heads={num_heads} must be a whole, even head dimension (rotary embeddings)")
        if vocab_size > np.iinfo(TOKEN_DTYPE).max + 1:
            raise ValueError(f"vocab_size={vocab_size} does not fit the uint16 token files")
        if test_target is not None:
            raise ValueError(f"test_target={test_target!r} must be null: finewebedu_lm has no test split")
        super().__init__(validation_target=validation_target, test_target=None, **common)

    # --- data ---------------------------------------------------------------------------

    def check_data(self) -> None:
        for stem in SPLITS.values():
            problem = self._token_file_problem(self.data_dir / f"{stem}.npy")
            if problem:
                raise PacerUserError(f"workload {self.name}: {problem}; expected {LAYOUT}")

    def _token_file_problem(self, path: Path) -> str | None:
        """What is wrong with a split's token file (read from its header only), or None."""
        if not self.data_dir.is_dir():
            return f"data_dir {self.data_dir} does not exist"
        if not path.is_file():
            unconverted = (self.data_dir / path.stem / "state.json").is_file()
            return f"{path} does not exist" + (" (data_dir holds AlgoPerf's unconverted folders: convert them first)" if unconverted else "")
        try:
            tokens = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            return f"{path} is not a .npy array ({type(e).__name__}: {e})"
        if tokens.dtype != TOKEN_DTYPE or tokens.ndim != 1:
            return f"{path} holds an array of {tokens.dtype}, shape {tokens.shape}, not a flat uint16 array"
        if len(tokens) < self.seq_len + 1:
            return f"{path} holds {len(tokens)} tokens, fewer than one sequence of seq_len + 1 = {self.seq_len + 1}"
        return None

    def make_datasets(self) -> SplitDatasets:
        train_file, val_file = (self.data_dir / f"{stem}.npy" for stem in SPLITS.values())
        return SplitDatasets(
            train=TokenSequences(train_file, self.seq_len),
            eval_train=TokenSequences(train_file, self.seq_len, limit=self.eval_train_size),
            validation=TokenSequences(val_file, self.seq_len, limit=self.validation_size),
            test=[],  # AlgoPerf's finewebedu_lm has no test split
        )

    def device_batch(self, host_batch: Mapping[str, Tensor], weights: Tensor | None = None) -> Batch:
        """`{"tokens": int64 (B, seq_len + 1)}` -> `inputs` and `targets` (B, seq_len), and
        `weights` (B,) spread to every token, (B, seq_len), on the device."""
        tokens = host_batch["tokens"].to(self.device, non_blocking=True)
        batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
        if weights is not None:
            batch["weights"] = weights.to(self.device, dtype=torch.float32, non_blocking=True)[:, None].expand(-1, self.seq_len)
        return batch

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """Uniformly random token sequences of the workload's shape, on the device."""
        generator = torch.Generator().manual_seed(seed)
        return self.device_batch({"tokens": torch.randint(0, self.vocab_size, (batch_size, self.seq_len + 1), generator=generator)})

    # --- model and loss -----------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return DecoderOnlyTransformer(vocab_size=self.vocab_size, seq_len=self.seq_len, width=self.width, num_layers=self.num_layers,
                                      num_heads=self.num_heads, mlp_dim=self.mlp_dim, rmsnorm_epsilon=self.rmsnorm_epsilon,
                                      qknorm_epsilon=self.qknorm_epsilon, tie_embeddings=self.tie_embeddings)

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        """The base's kinds (embedding, RMSNorm scales as LAYER_NORM_SCALE, other weights),
        with the fused attention projections marked ATTENTION_QKV and ATTENTION_OUT."""
        types = super().model_params_types
        return types | {name: ATTENTION_PROJECTIONS[module] for name in types if (module := name.split(".")[-2]) in ATTENTION_PROJECTIONS}

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Cross-entropy of (B, T, V) logits against (B, T) next-token ids, per token.

        `mask_batch` (B, T) weighs each token (0 for padding); without it every token counts.
        Returns `per_example` (B, T), its sum and the number of valid tokens (AlgoPerf's
        `finewebedu_lm_pytorch/workload.py` `loss_fn`)."""
        per_token = F.cross_entropy(logits_batch.flatten(0, 1), label_batch.flatten(), reduction="none",
                                    label_smoothing=label_smoothing).view_as(label_batch)
        if mask_batch is None:
            n_valid = torch.tensor(float(label_batch.numel()), device=per_token.device)
        else:
            per_token, n_valid = per_token * mask_batch, mask_batch.sum()
        return {"summed": per_token.sum(), "n_valid_examples": n_valid, "per_example": per_token}

    # --- evaluation ---------------------------------------------------------------------

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        loss = self.loss_fn(batch["targets"], logits, batch["weights"])
        return BatchEval(sums={"loss": loss["summed"], "tokens": loss["n_valid_examples"]})

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        """Mean token loss and perplexity over the split; nothing for the empty test split."""
        if not sums["num_examples"]:
            return {}
        loss = sums["loss"] / sums["tokens"]
        return {"loss": loss, "ppl": perplexity(loss)}
