"""Criteo 1TB click-through prediction by DLRM-small: AlgoPerf's `criteo1tb` workload.

AlgoPerf: `algoperf/workloads/criteo1tb/workload.py` (targets, budget, eval period, step
hint, split sizes), `criteo1tb_pytorch/workload.py` (loss, variants), `criteo1tb_pytorch/
models.py` (the model, here `workloads.models.criteo1tb.DLRM`) and `input_pipeline.py` (the
preprocessing, here done once by `workloads.data.criteo1tb.convert`). The target metric is
the validation loss: the sigmoid binary cross-entropy averaged over every example of the
split, each counted once. Targets and budgets per AlgoPerf version, sizes and the variants
(`layernorm`, `resnet`, `embed_init`) are in configs/workload/criteo1tb.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from harness.core.checks import finite_number, flag, whole_number, whole_numbers
from harness.core.errors import PacerUserError
from harness.core.spec import Batch, ForwardPassMode, LossOutput, LossType, MetricDirection, ModelAuxiliaryState, ParameterContainer, Tensor
from harness.plugins.loader_workload import BatchEval, LoaderWorkload, SplitDatasets
from workloads.data.criteo1tb import CONVERTED_LAYOUT, NUM_DENSE, NUM_SPARSE, RAW_LAYOUT, SPLITS, VOCAB_SIZES, CriteoArrays, check_converted, split_files
from workloads.data.criteo1tb import collate as collate_rows
from workloads.models.criteo1tb import DLRM

LAYOUT = f"data_dir holding the {CONVERTED_LAYOUT}, converted from the {RAW_LAYOUT}"


class EvenlySpaced(Dataset[tuple[Tensor, Tensor]]):
    """`n` examples of `dataset` spread evenly over it, from an offset set by `seed`: a fixed
    subset of a table too large to permute (AlgoPerf's eval_train reads the first examples of
    its shuffled training files)."""

    def __init__(self, dataset: CriteoArrays, n: int, seed: int):
        self.dataset, self.n = dataset, min(n, len(dataset))
        self.stride = len(dataset) // self.n
        self.offset = seed % self.stride

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} of {self.n} examples")
        return self.dataset[self.offset + index * self.stride]


def per_example_sigmoid_binary_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """`-(y log sigmoid(z) + (1 - y) log sigmoid(-z))` for logits z and labels y in [0, 1],
    both (B,): (B,). As AlgoPerf's `_per_example_sigmoid_binary_cross_entropy`."""
    return -(targets * F.logsigmoid(logits) + (1.0 - targets) * F.logsigmoid(-logits))


class Criteo1TB(LoaderWorkload):
    target_metric_name = "loss"
    target_metric_direction = MetricDirection.MINIMIZE
    augments_examples = False  # no augmentation: batches are read in one vectorised pass (`CriteoArrays.__getitems__`)
    collate = staticmethod(collate_rows)

    def __init__(self, *, vocab_size: int = 4_194_304, mlp_bottom_dims: Sequence[int] = (512, 256, 128),
                 mlp_top_dims: Sequence[int] = (1024, 1024, 512, 256, 1), embed_dim: int = 128, use_layer_norm: bool = False,
                 embedding_init_multiplier: float | None = None, use_resnet: bool = False, **common):
        self.vocab_size, self.embed_dim = whole_number("vocab_size", vocab_size), whole_number("embed_dim", embed_dim)
        self.mlp_bottom_dims, self.mlp_top_dims = whole_numbers("mlp_bottom_dims", mlp_bottom_dims), whole_numbers("mlp_top_dims", mlp_top_dims)
        self.use_layer_norm, self.use_resnet = flag("use_layer_norm", use_layer_norm), flag("use_resnet", use_resnet)
        self.embedding_init_multiplier = None if embedding_init_multiplier is None else finite_number(
            "embedding_init_multiplier", embedding_init_multiplier, 0, exclusive=True)
        if self.mlp_top_dims[-1] != 1:
            raise ValueError(f"mlp_top_dims={list(self.mlp_top_dims)} must end in 1 (one click logit)")
        with torch.device("meta"):  # the model's own checks of the sizes, at no cost, before any data is read
            self.build_model()
        super().__init__(**common)

    def check_targets(self) -> None:
        """Raise ValueError for a negative target (a cross-entropy is never below 0)."""
        for split, value in (("validation", self.validation_target_value), ("test", self.test_target_value)):
            if value < 0:
                raise ValueError(f"{split} target {value:g} of the loss (lower is better) is below its optimum 0")

    # --- model ----------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return DLRM(vocab_size=self.vocab_size, num_dense_features=NUM_DENSE, num_sparse_features=NUM_SPARSE,
                    mlp_bottom_dims=self.mlp_bottom_dims, mlp_top_dims=self.mlp_top_dims, embed_dim=self.embed_dim,
                    use_layer_norm=self.use_layer_norm, embedding_init_multiplier=self.embedding_init_multiplier, use_resnet=self.use_resnet)

    # --- data -----------------------------------------------------------------------------

    def check_data(self) -> None:
        try:
            check_converted(self.data_dir)
        except ValueError as converted_problem:
            try:
                split_files(self.data_dir)
            except ValueError:
                raise PacerUserError(f"workload {self.name}: {converted_problem}; expected {LAYOUT}") from None
            raise PacerUserError(f"workload {self.name}: {self.data_dir} holds the raw TSV files: convert them once with "
                                 f"`pacer data convert criteo1tb {self.data_dir} DEST` and set workload.data_dir=DEST; "
                                 f"expected {LAYOUT}") from None

    def make_datasets(self) -> SplitDatasets:
        train, validation, test = (CriteoArrays(self.data_dir / split) for split in SPLITS)
        return SplitDatasets(train=train, eval_train=EvenlySpaced(train, self.eval_train_size, self.dataset_seed),
                             validation=validation, test=test)

    def device_batch(self, host_batch: tuple[Tensor, Tensor], weights: Tensor | None = None) -> Batch:
        inputs, targets = host_batch
        batch = {"inputs": inputs.to(self.device, non_blocking=True), "targets": targets.to(self.device, non_blocking=True)}
        return batch if weights is None else batch | {"weights": weights.to(self.device, non_blocking=True)}

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """Log-transformed counts in [0, 10), each categorical column's ids uniform below its
        raw vocabulary size (rounded to float32, as AlgoPerf's), labels 0/1 (a quarter clicks)."""
        g = torch.Generator().manual_seed(seed)
        dense = torch.rand(batch_size, NUM_DENSE, generator=g) * 10
        vocab = torch.tensor(VOCAB_SIZES, dtype=torch.float64)
        ids = (torch.rand(batch_size, NUM_SPARSE, generator=g, dtype=torch.float64) * vocab).floor().float()
        targets = (torch.rand(batch_size, generator=g) < 0.25).float()
        return {"inputs": torch.cat([dense, ids], dim=1).to(self.device), "targets": targets.to(self.device)}

    # --- loss -----------------------------------------------------------------------------

    @property
    def loss_type(self) -> LossType:
        return LossType.SIGMOID_CROSS_ENTROPY

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Sigmoid binary cross-entropy of (B,) or (B, 1) logits against (B,) labels in [0, 1];
        `mask_batch` (B,) weighs the examples. `label_smoothing` is ignored, as in AlgoPerf."""
        batch = label_batch.shape[0]
        per_example = per_example_sigmoid_binary_cross_entropy(logits_batch.reshape(batch), label_batch.reshape(batch))
        if mask_batch is not None:
            mask_batch = mask_batch.reshape(batch)
            per_example = per_example * mask_batch
            n_valid = mask_batch.sum()
        else:
            n_valid = torch.tensor(float(batch), device=per_example.device)
        return {"summed": per_example.sum(), "n_valid_examples": n_valid, "per_example": per_example}

    # --- evaluation -----------------------------------------------------------------------

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        return BatchEval(sums={"loss": self.loss_fn(batch["targets"], logits, batch["weights"])["summed"]})

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        return {"loss": sums["loss"] / sums["num_examples"] if sums["num_examples"] else math.nan}
