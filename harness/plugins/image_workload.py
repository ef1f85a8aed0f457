"""The image-classification layer of `LoaderWorkload`: examples are `(uint8 CHW image,
label)`, collated by `default_collate`; images travel as uint8 and are normalised (and made
channels-last with `channels_last: true`) on the device; evaluation reports the
example-weighted cross-entropy `loss` and `accuracy`, both sums all-reduced over ranks.

A concrete workload (one file in `workloads/`) declares `mean` and `std` and supplies
`check_data`, `make_datasets` and `build_model` (see `LoaderWorkload`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from harness.core.checks import flag
from harness.core.spec import Batch, ForwardPassMode, MetricDirection, ModelAuxiliaryState, ParameterContainer, Tensor
from harness.plugins.loader_workload import BatchEval, LoaderWorkload

ImageExample = tuple[Tensor, int]
"""A uint8 (3, H, W) image and its class."""


class ImageClassifierWorkload(LoaderWorkload):
    """Base for image classifiers fed by DataLoaders. Keyword arguments are the config's
    keys: `channels_last` and those of `LoaderWorkload`."""

    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE
    mean: tuple[float, float, float]
    """Per-channel mean of the images on the 0-255 scale."""
    std: tuple[float, float, float]

    def __init__(self, *, channels_last: bool = True, **common):
        self.channels_last = flag("channels_last", channels_last)
        self._normalizer: tuple[Tensor, Tensor] | None = None
        super().__init__(**common)

    def model_to_device(self, model: nn.Module) -> nn.Module:
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def device_batch(self, host_batch: tuple[Tensor, Tensor], weights: Tensor | None = None) -> Batch:
        """`(uint8 (B, 3, H, W) images, (B,) labels)` on the host -> `inputs` (normalised
        float32), `targets` and (given `weights`) `weights` on the device."""
        images, labels = host_batch
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        inputs = images.to(self.device, non_blocking=True).to(dtype=torch.float32, memory_format=memory_format)
        if self._normalizer is None:
            self._normalizer = (torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1), torch.tensor(self.std, device=self.device).view(1, 3, 1, 1))
        mean, std = self._normalizer
        batch = {"inputs": (inputs - mean) / std, "targets": labels.to(self.device, non_blocking=True)}
        if weights is not None:
            batch["weights"] = weights.to(self.device, dtype=torch.float32, non_blocking=True)
        return batch

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        loss = self.loss_fn(batch["targets"], logits, batch["weights"])["summed"]
        correct = ((logits.argmax(-1) == batch["targets"]) * batch["weights"]).sum()
        return BatchEval(sums={"loss": loss, "correct": correct})

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        return {"loss": sums["loss"] / sums["num_examples"], "accuracy": sums["correct"] / sums["num_examples"]}
