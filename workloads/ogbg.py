"""Molecular property prediction on ogbg-molpcba by a graph network: AlgoPerf's `ogbg`
workload (algoperf/workloads/ogbg/).

Data: the TFRecord shards of TFDS `ogbg_molpcba:0.1.3` (350,343 / 43,793 / 43,793 graphs;
`workloads.data.ogbg.LAYOUT`), read without TensorFlow. Each molecule has 128 binary
labels, many missing (NaN); a batch carries `targets` (G, 128) with missing labels set to 0
and `weights` (G, 128), AlgoPerf's per-label mask: 0 for a missing label and for every label
of an evaluation padding graph. Submissions pass `batch["weights"]` to `loss_fn` as
`mask_batch`, so missing labels never reach the loss.

Loss: sigmoid binary cross-entropy per label, masked (AlgoPerf's
`_binary_cross_entropy_with_mask`). Metric: mean over tasks of scikit-learn's average
precision of the labelled graphs (AlgoPerf's metrics.py). Targets, budget, eval period and
step hint per AlgoPerf version, and the variants (GELU, SiLU, model size), are in
configs/workload/ogbg.yaml; docs/workloads/ogbg.md lists the differences from AlgoPerf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from sklearn.metrics import average_precision_score
from torch import nn
from torch.utils.data import Subset

from harness.core.checks import check_choice, whole_number
from harness.core.errors import PacerUserError
from harness.core.spec import Batch, ForwardPassMode, LossOutput, LossType, MetricDirection, ModelAuxiliaryState, ParameterContainer, Tensor
from harness.plugins.loader_workload import BatchEval, LoaderWorkload, SplitDatasets, fixed_subset
from workloads.data.ogbg import (
    LAYOUT,
    NUM_TASKS,
    SPLITS,
    DataLayoutError,
    GraphBatch,
    GraphDataset,
    PackedGraphs,
    collate_graphs,
    parse_graph,
    read_records,
    shard_paths,
)
from workloads.models.ogbg import ACTIVATIONS, GNN

SYNTHETIC_NODES, SYNTHETIC_BONDS = 26, 28
"""Per synthetic graph: AlgoPerf's budget of 26 nodes and 56 directed edges per graph."""


def mean_average_precision(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> float:
    """Mean over tasks of the average precision of the labelled graphs (AlgoPerf's
    `MeanAveragePrecision.compute`, algoperf/workloads/ogbg/metrics.py).

    A task without a labelled positive is skipped (its AP is undefined); a task whose
    labelled graphs are all positive scores 1. (AlgoPerf also asks for a label equal to 0
    among all rows, but missing labels and its padding graphs always supply one.)

    Args:
        logits: (G, T) model outputs.
        labels: (G, T) labels in {0, 1} (any value where `mask` is 0).
        mask: (G, T), nonzero where the label is known.

    Returns:
        The mean AP of the tasks not skipped, or NaN when all are skipped.
    """
    probs, known = expit(logits), mask.astype(bool)
    precisions = [average_precision_score(labels[known[:, t], t], probs[known[:, t], t])
                  for t in range(labels.shape[1]) if (labels[known[:, t], t] == 1).any()]
    return float(np.mean(precisions)) if precisions else float("nan")


class OgbgWorkload(LoaderWorkload):
    """Keyword arguments are the config's keys: the model's `activation`, `latent_dim`,
    `hidden_dims`, `num_message_passing_steps`, and those of `LoaderWorkload`."""

    target_metric_name = "mean_average_precision"
    target_metric_direction = MetricDirection.MAXIMIZE
    collate = staticmethod(collate_graphs)

    def __init__(self, *, activation: str = "relu", latent_dim: int = 256, hidden_dims: Sequence[int] = (256,),
                 num_message_passing_steps: int = 5, **common):
        self.activation, self.latent_dim = check_choice("activation", activation, tuple(ACTIVATIONS)), whole_number("latent_dim", latent_dim)
        if not isinstance(hidden_dims, (list, tuple)) or not hidden_dims:
            raise ValueError(f"hidden_dims={hidden_dims!r} must be a non-empty list of widths")
        self.hidden_dims = tuple(whole_number("hidden_dims", width) for width in hidden_dims)
        self.num_message_passing_steps = whole_number("num_message_passing_steps", num_message_passing_steps)
        super().__init__(**common)

    def _user_error(self, problem: object) -> PacerUserError:
        return PacerUserError(f"workload {self.name}: {problem}; expected {LAYOUT}")

    def check_data(self) -> None:
        """The shards of every split are complete and the first validation graph parses."""
        if not self.data_dir.is_dir():
            raise self._user_error(f"data_dir {self.data_dir} does not exist")
        try:
            shards = {split: shard_paths(self.data_dir, split) for split in SPLITS}
            first = read_records(shards["validation"][0], limit=1)
            if not first:
                raise DataLayoutError(f"{shards['validation'][0]} holds no graphs")
            parse_graph(first[0], str(shards["validation"][0]))
        except DataLayoutError as e:
            raise self._user_error(e) from None

    def make_datasets(self) -> SplitDatasets:
        try:
            train, validation, test = (GraphDataset(PackedGraphs.read(self.data_dir, split)) for split in SPLITS)
        except DataLayoutError as e:
            raise self._user_error(e) from None
        return SplitDatasets(train=train, eval_train=Subset(train, fixed_subset(len(train), self.eval_train_size, self.dataset_seed)),
                             validation=validation, test=test)

    def build_model(self) -> nn.Module:
        return GNN(num_outputs=NUM_TASKS, activation=self.activation, latent_dim=self.latent_dim, hidden_dims=self.hidden_dims,
                   num_message_passing_steps=self.num_message_passing_steps)

    def device_batch(self, host_batch: GraphBatch, weights: Tensor | None = None) -> Batch:
        """`collate_graphs`' host batch of G graphs -> `inputs` (`Graphs`), `targets` (G, 128)
        and `weights` (G, 128): the label mask, times the graph's evaluation weight if given."""
        mask = host_batch["label_mask"].to(self.device, non_blocking=True)
        if weights is not None:
            mask = mask * weights.to(self.device, dtype=torch.float32, non_blocking=True)[:, None]
        return {"inputs": host_batch["graphs"].to(self.device, non_blocking=True),
                "targets": host_batch["targets"].to(self.device, non_blocking=True), "weights": mask}

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """`batch_size` random molecules of 26 atoms and 28 bonds, about 60% of labels missing."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, (batch_size, NUM_TASKS)).astype(np.float32)
        labels[rng.random(labels.shape) < 0.6] = np.nan
        examples = [{"node_feat": rng.integers(0, 10, (SYNTHETIC_NODES, 9)).astype(np.float32),
                     "edge_feat": rng.integers(0, 4, (SYNTHETIC_BONDS, 3)).astype(np.float32),
                     "edge_index": rng.integers(0, SYNTHETIC_NODES, (SYNTHETIC_BONDS, 2)), "labels": row} for row in labels]
        return self.device_batch(collate_graphs(examples))

    @property
    def loss_type(self) -> LossType:
        return LossType.SIGMOID_CROSS_ENTROPY

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Sigmoid cross-entropy of (G, 128) logits against (G, 128) labels smoothed towards
        1/128 (AlgoPerf's formula), zero where `mask_batch` (G, 128) is 0;
        `n_valid_examples` counts the labels that count (all G * 128 without a mask).

        Raises:
            ValueError: the shapes differ or are not (G, T).
        """
        mask = torch.ones_like(logits_batch) if mask_batch is None else mask_batch
        if not logits_batch.shape == label_batch.shape == mask.shape or logits_batch.dim() != 2:
            raise ValueError(f"logits {tuple(logits_batch.shape)}, labels {tuple(label_batch.shape)} and mask {tuple(mask.shape)} must be one (G, T) shape")
        known = mask.bool()
        labels = torch.where(known, label_batch, 0.0)  # missing labels may be NaN: keep them out of the gradient
        smoothed = (1.0 - label_smoothing) * labels + label_smoothing / labels.shape[-1]
        per_label = torch.where(known, F.binary_cross_entropy_with_logits(logits_batch, smoothed, reduction="none"), 0.0)
        return {"summed": per_label.sum(), "n_valid_examples": mask.sum(), "per_example": per_label}

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        """Sums over the labels that count of the loss and of the accuracy of `logits > 0`;
        per graph, its logits, labels and mask (for the average precision)."""
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        targets, mask = batch["targets"], batch["weights"]
        correct = ((logits > 0) == (targets == 1)).float() * mask
        sums = {"loss": self.loss_fn(targets, logits, mask)["summed"], "correct": correct.sum(), "num_labels": mask.sum()}
        rows = torch.stack([logits, targets, mask], dim=1).cpu().numpy()  # (G, 3, 128)
        return BatchEval(sums=sums, per_example=list(rows))

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        rows = np.stack([np.asarray(row) for row in per_example])  # (G, 3, 128): logits, labels, mask
        return {"loss": sums["loss"] / sums["num_labels"], "accuracy": sums["correct"] / sums["num_labels"],
                "mean_average_precision": mean_average_precision(rows[:, 0], rows[:, 1], rows[:, 2])}
