"""Single-coil knee MRI reconstruction by a U-Net: AlgoPerf's `fastmri` workload.

AlgoPerf: `algoperf/workloads/fastmri/workload.py` (targets, budget, eval period, step hint,
split sizes), `fastmri_pytorch/workload.py` (loss, evaluation, variants),
`fastmri_pytorch/models.py` (the model, here `workloads.models.fastmri.UNet`),
`fastmri_pytorch/ssim.py` (the metric, here `ssim`) and `input_pipeline.py` (the data, here
`workloads.data.fastmri`). From a 4x undersampled k-space slice the model reconstructs the
320 x 320 image; the input and target are normalized by the input's mean and std.

Loss: mean absolute error per slice. Metric: SSIM per slice of the denormalized images with
the volume's maximum as data range, averaged over the slices of the split, each counted once
(AlgoPerf sums per-slice SSIMs and divides by the number of slices). Targets and budgets per
AlgoPerf version and the variants (`model_size`, `tanh`, `layernorm`) are in
configs/workload/fastmri.yaml; docs/workloads/fastmri.md lists the differences from AlgoPerf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from harness.core.checks import flag, whole_number
from harness.core.errors import PacerUserError
from harness.core.spec import Batch, ForwardPassMode, LossOutput, LossType, MetricDirection, ModelAuxiliaryState, ParameterContainer, Tensor
from harness.plugins.loader_workload import BatchEval, HostBatch, LoaderWorkload, SplitDatasets, fixed_subset
from workloads.data.fastmri import CLIP, EVAL_MASK_SEED, LAYOUT, VALIDATION_VOLUMES, FastMRISlices, check_volume, split_files
from workloads.models.fastmri import UNet

IMAGE_SIZE = 320
"""Side of AlgoPerf's target images (and so of the model's input and output)."""
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03


# --- metric ------------------------------------------------------------------------------


def _symmetric_pad(images: Tensor, pad: int) -> Tensor:
    """(B, H, W) -> (B, H + 2 pad, W + 2 pad), mirrored with the edge repeated (numpy's
    "symmetric", scipy's "reflect"; torch's "reflect" would drop the edge)."""
    images = torch.cat([images[:, :pad].flip(1), images, images[:, -pad:].flip(1)], dim=1)
    return torch.cat([images[:, :, :pad].flip(2), images, images[:, :, -pad:].flip(2)], dim=2)


def _uniform_filter(images: Tensor, size: int) -> Tensor:
    """Mean over the size x size window around each pixel, symmetric padding: (B, H, W) -> (B, H, W)."""
    padded = _symmetric_pad(images, size // 2)
    return F.avg_pool2d(padded.unsqueeze(1), kernel_size=size, stride=1).squeeze(1)


def structural_similarity(x: Tensor, y: Tensor, data_range: Tensor) -> Tensor:
    """Mean SSIM (Wang et al. 2004) of each pair of (B, H, W) images with data ranges (B,):
    (B,). As AlgoPerf's `structural_similarity` (a port of scikit-image's defaults): a 7 x 7
    uniform window with symmetric padding, sample (n - 1) covariances, C1 = (0.01 L)^2,
    C2 = (0.03 L)^2, averaged over the pixels at least 3 from the border."""
    n = SSIM_WINDOW ** 2
    cov_norm = n / (n - 1)
    ux, uy = _uniform_filter(x, SSIM_WINDOW), _uniform_filter(y, SSIM_WINDOW)
    vx = cov_norm * (_uniform_filter(x * x, SSIM_WINDOW) - ux * ux)
    vy = cov_norm * (_uniform_filter(y * y, SSIM_WINDOW) - uy * uy)
    vxy = cov_norm * (_uniform_filter(x * y, SSIM_WINDOW) - ux * uy)
    c1 = ((SSIM_K1 * data_range) ** 2).view(-1, 1, 1)
    c2 = ((SSIM_K2 * data_range) ** 2).view(-1, 1, 1)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = SSIM_WINDOW // 2
    return s[:, pad:-pad, pad:-pad].mean(dim=(1, 2))


def ssim(outputs: Tensor, targets: Tensor, mean: Tensor, std: Tensor, volume_max: Tensor) -> Tensor:
    """Per-slice SSIM of normalized (B, H, W) outputs against targets: (B,), clipped to
    [-1, 1]. Both are denormalized by the slice's `mean` and `std` (B,); the data range is the
    volume's maximum `volume_max` (B,), 1 where it is 0 (a volume without the attribute), as
    AlgoPerf's `ssim` (fastmri_pytorch/ssim.py)."""
    scale, shift = std.view(-1, 1, 1), mean.view(-1, 1, 1)
    data_range = torch.where(volume_max == 0, torch.ones_like(volume_max), volume_max)
    return structural_similarity(outputs * scale + shift, targets * scale + shift, data_range).clamp(-1.0, 1.0)


# --- workload ----------------------------------------------------------------------------


class FastMRI(LoaderWorkload):
    target_metric_name = "ssim"
    target_metric_direction = MetricDirection.MAXIMIZE

    def __init__(self, *, num_channels: int = 32, num_pool_layers: int = 4, use_tanh: bool = False,
                 use_layer_norm: bool = False, validation_volumes: int = VALIDATION_VOLUMES, **common):
        self.num_channels, self.num_pool_layers = whole_number("num_channels", num_channels), whole_number("num_pool_layers", num_pool_layers)
        self.use_tanh, self.use_layer_norm = flag("use_tanh", use_tanh), flag("use_layer_norm", use_layer_norm)
        self.validation_volumes = whole_number("validation_volumes", validation_volumes)
        super().__init__(**common)

    def check_targets(self) -> None:
        """Raise ValueError for a target outside SSIM's range [-1, 1]."""
        for split, value in (("validation", self.validation_target_value), ("test", self.test_target_value)):
            if value is not None and not -1 <= value <= 1:
                raise ValueError(f"{split} target {value:g} of the SSIM is outside [-1, 1]")

    # --- model ----------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return UNet(num_channels=self.num_channels, num_pool_layers=self.num_pool_layers, use_tanh=self.use_tanh,
                    use_layer_norm=self.use_layer_norm)

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """(B, H, W) normalized input images -> (B, H, W) reconstructions."""
        return model(batch["inputs"].unsqueeze(1)).squeeze(1)

    # --- data -----------------------------------------------------------------------------

    def check_data(self) -> None:
        try:
            files = split_files(self.data_dir, self.validation_volumes)
            for split in ("train", "validation"):
                check_volume(files[split][0])
        except ValueError as problem:
            raise PacerUserError(f"workload {self.name}: {problem}; expected {LAYOUT}") from None

    def make_datasets(self) -> SplitDatasets:
        """Reads every volume's header (`check_data` looked at one per directory)."""
        try:
            files = split_files(self.data_dir, self.validation_volumes)
            train = FastMRISlices(files["train"], mask_seed=self.dataset_seed, per_slice_masks=True)
            validation = FastMRISlices(files["validation"], mask_seed=EVAL_MASK_SEED, per_slice_masks=False)
            test = FastMRISlices(files["test"], mask_seed=EVAL_MASK_SEED, per_slice_masks=False)
        except ValueError as problem:
            raise PacerUserError(f"workload {self.name}: {problem}; expected {LAYOUT}") from None
        return SplitDatasets(train=train, eval_train=Subset(train, fixed_subset(len(train), self.eval_train_size, self.dataset_seed)),
                             validation=validation, test=test)

    def device_batch(self, host_batch: HostBatch, weights: Tensor | None = None) -> Batch:
        """(inputs, targets, mean, std, volume_max) -> a dict of them on the device."""
        keys = ("inputs", "targets", "mean", "std", "volume_max")
        batch = {key: torch.as_tensor(value).to(self.device, dtype=torch.float32, non_blocking=True)
                 for key, value in zip(keys, host_batch, strict=True)}
        return batch if weights is None else batch | {"weights": weights.to(self.device, non_blocking=True)}

    def synthetic_batch(self, batch_size: int, seed: int = 0) -> Batch:
        """Normal images clipped to [-6, 6] at 320 x 320, means in [0, 1e-4), stds in
        [1e-5, 2e-5) and volume maxima in [5e-4, 1e-3): the orders of the real scans."""
        g = torch.Generator().manual_seed(seed)
        images = torch.randn(2, batch_size, IMAGE_SIZE, IMAGE_SIZE, generator=g).clamp(-CLIP, CLIP)
        batch = {"inputs": images[0], "targets": images[1], "mean": torch.rand(batch_size, generator=g) * 1e-4,
                 "std": (1 + torch.rand(batch_size, generator=g)) * 1e-5, "volume_max": (1 + torch.rand(batch_size, generator=g)) * 5e-4}
        return {key: value.to(self.device) for key, value in batch.items()}

    # --- loss -----------------------------------------------------------------------------

    @property
    def loss_type(self) -> LossType:
        return LossType.MEAN_ABSOLUTE_ERROR

    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor, mask_batch: Tensor | None = None, label_smoothing: float = 0.0) -> LossOutput:
        """Mean absolute error per slice of (B, H, W) reconstructions against (B, H, W)
        targets; `mask_batch` (B,) weighs the slices. `label_smoothing` is ignored, as in
        AlgoPerf."""
        per_example = (logits_batch - label_batch).abs().mean(dim=(1, 2))
        if mask_batch is not None:
            per_example = per_example * mask_batch
            n_valid = mask_batch.sum()
        else:
            n_valid = torch.tensor(float(len(per_example)), device=per_example.device)
        return {"summed": per_example.sum(), "n_valid_examples": n_valid, "per_example": per_example}

    # --- evaluation -----------------------------------------------------------------------

    def eval_batch(self, params: ParameterContainer, model_state: ModelAuxiliaryState, batch: Batch) -> BatchEval:
        outputs, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        weights = batch["weights"]
        per_slice = ssim(outputs, batch["targets"], batch["mean"], batch["std"], batch["volume_max"])
        return BatchEval(sums={"ssim": (per_slice * weights).sum(),
                               "loss": self.loss_fn(batch["targets"], outputs, weights)["summed"]})

    def summarize(self, sums: Mapping[str, float], per_example: Sequence[object]) -> dict[str, float]:
        n = sums["num_examples"]
        return {"ssim": sums["ssim"] / n if n else math.nan, "loss": sums["loss"] / n if n else math.nan}
