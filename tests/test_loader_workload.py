"""`LoaderWorkload` beyond images: a tiny workload of variable-length token sequences with a
custom (padding) collate, a regression loss and a non-decomposable metric (the median
squared error, from gathered per-example outputs), run through one training step and one
evaluation, on one process and on two gloo processes."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import torch
from gloo import assert_same_results, on_two_gloo_processes, trained
from torch import nn

from harness.core.spec import Batch, ForwardPassMode, LossOutput, LossType, MetricDirection, ModelAuxiliaryState, ParameterContainer, Tensor
from harness.plugins.loader_workload import BatchEval, Example, LoaderWorkload, SplitDatasets

SIZES = {"train": 10, "eval_train": 5, "validation": 7, "test": 3}  # odd sizes: padding under 2 ranks


def sequences(n: int, seed: int) -> list[Example]:
    """`n` examples `{"id", "tokens" (1-5 ints in [1, 10)), "target"}`."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (n,), generator=g).tolist()
    return [{"id": i, "tokens": torch.randint(1, 10, (length,), generator=g), "target": float(torch.randn((), generator=g))}
            for i, length in enumerate(lengths)]


def pad_collate(examples: list[Example]) -> dict[str, Tensor]:
    """Tokens padded with 0 to the batch's longest: `tokens` (B, T), `ids`, `targets` (B,)."""
    return {"tokens": nn.utils.rnn.pad_sequence([e["tokens"] for e in examples], batch_first=True),
            "ids": torch.tensor([e["id"] for e in examples]), "targets": torch.tensor([e["target"] for e in examples])}


class MeanEmbedding(nn.Module):
    """Mean of the tokens' embeddings (padding 0 embeds to zero) -> one score per sequence."""

    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 4, padding_idx=0), nn.Linear(4, 1)

    def forward(self, tokens: Tensor) -> Tensor:
        lengths = (tokens != 0).sum(1, keepdim=True)
        return self.head(self.embed(tokens).sum(1) / lengths).squeeze(-1)


class SequenceRegression(LoaderWorkload):
    target_metric_name = "median_squared_error"
    target_metric_direction = MetricDirection.MINIMIZE
    collate = staticmethod(pad_collate)

    def check_data(self) -> None:
        pass

    def make_datasets(self) -> SplitDatasets:
        return SplitDatasets(**{split: sequences(n, seed) for seed, (split, n) in enumerate(SIZES.items())})

    def build_model(self) -> nn.Module:
        return MeanEmbedding()

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch["tokens"])

    def device_batch(self, host_batch: Mapping[str, Tensor], weights: Tensor | None = None) -> Batch:
        batch = {key: value.to(self.device) for key, value in host_batch.items()}
        return batch if weights is None else batch | {"weights": weights.to(self.device)}

    @property
    def loss_type(self) -> LossType:
        return LossType.MEAN_SQUARED_ERROR

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        per_example = (logits_batch - label_batch) ** 2 * (1.0 if mask_batch is None else mask_batch)
        n_valid = mask_batch.sum() if mask_batch is not None else torch.tensor(float(len(per_example)))
        return {"summed": per_example.sum(), "n_valid_examples": n_valid, "per_example": per_example}

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        scores, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        errors = (scores - batch["targets"]) ** 2
        return BatchEval(sums={"squared_error": (errors * batch["weights"]).sum()},
                         per_example=list(zip(batch["ids"].tolist(), errors.tolist(), strict=True)))

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        ids, errors = zip(*per_example, strict=True)
        return {"median_squared_error": statistics.median(errors), "mean_squared_error": sums["squared_error"] / sums["num_examples"],
                "ids_in_order": float(list(ids) == list(range(len(ids))))}  # each example once, in dataset order


def tiny(**overrides: object) -> SequenceRegression:
    settings = {"name": "sequences", "validation_target": 0.0, "test_target": 0.0, "max_runtime_sec": 60, "eval_period_sec": 0, "step_hint": 10,
                "batch_size": 4, "eval_batch_size": 4, "data_dir": ".", "eval_train_size": SIZES["eval_train"], "num_workers": 0, "eval_num_workers": 0}
    return SequenceRegression(**settings | overrides)


def by_hand(workload: SequenceRegression, model: nn.Module, split: str) -> list[float]:
    """Every example's squared error, one example at a time."""
    examples = getattr(workload.datasets, split)
    with torch.no_grad():
        return [float((model(e["tokens"][None]) - e["target"]) ** 2) for e in examples]


def test_one_train_step_and_a_gathered_metric_that_counts_every_example_once() -> None:
    workload = tiny(eval_batch_size=3)
    model = trained(workload, 0.1)
    result = workload.eval_model(3, model, None, 0, 0)
    for split, key in (("train", "eval_train"), ("validation", "validation"), ("test", "test")):
        errors = by_hand(workload, model, key)
        assert result[f"{split}/num_examples"] == SIZES[key] and result[f"{split}/ids_in_order"] == 1.0
        assert result[f"{split}/median_squared_error"] == pytest.approx(statistics.median(errors), rel=1e-5)
        assert result[f"{split}/mean_squared_error"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)


def test_takes_of_any_size_are_the_stream_cut_exactly() -> None:
    """Padded batches cannot be cut after collating: other take sizes re-read their examples."""
    workload = tiny(num_workers=1)
    whole = workload.build_input_queue(5, 4)
    ids = torch.cat([next(whole)["ids"] for _ in range(4)])  # 16 examples: crosses the 10-example epoch
    queue = workload.build_input_queue(5, 4)
    parts = [queue.take(3), queue.take(5), next(queue), queue.take(4)]
    assert torch.equal(torch.cat([p["ids"] for p in parts]), ids)
    restored = workload.build_input_queue(5, 4)
    restored.load_state_dict({"taken": 3})
    assert torch.equal(torch.cat([restored.take(1)["ids"], next(restored)["ids"]]), ids[3:8])


def evaluate_trained() -> dict[str, float]:
    workload = tiny(eval_batch_size=4)  # 2 per rank
    return workload.eval_model(4, trained(workload, 0.1), None, 0, 0)


def test_two_gloo_processes_evaluate_as_one(tmp_path: Path) -> None:
    assert_same_results(on_two_gloo_processes(evaluate_trained, folder=tmp_path), evaluate_trained())
