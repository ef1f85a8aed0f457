"""ImageNet classified by ViT-S/16: AlgoPerf's `imagenet_vit` workload.

Same data and evaluation as `imagenet_resnet50`; training adds AlgoPerf's RandAugment
(here torchvision's `RandAugment(num_ops=2, magnitude=10)`, which stands in for AlgoPerf's
port of the TF implementation: the op set and magnitudes differ slightly) and mixup
(alpha 0.2: each batch is blended with itself rolled by one, targets become class
probabilities; under DDP each rank mixes its own shard, as in AlgoPerf). Model sizes,
targets, budget and the variants (GLU, post-LayerNorm, MAP head) are in
configs/workload/imagenet_vit.yaml.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.core import rng as rnglib
from harness.core.checks import finite_number, flag, whole_number
from harness.core.spec import Batch, Rng
from workloads.imagenet_resnet50 import ImagenetWorkload
from workloads.models.vit import ViT


class ImagenetVit(ImagenetWorkload):
    randaugment = True

    def __init__(self, *, patch_size: int = 16, width: int = 384, depth: int = 12, mlp_dim: int = 1536, num_heads: int = 6,
                 use_glu: bool = False, post_ln: bool = False, use_map: bool = False, mixup_alpha: float = 0.2, **common):
        self.patch_size, self.width, self.depth = whole_number("patch_size", patch_size), whole_number("width", width), whole_number("depth", depth)
        self.mlp_dim, self.num_heads = whole_number("mlp_dim", mlp_dim), whole_number("num_heads", num_heads)
        if width % 4 or width < 8:  # sin-cos position embeddings: width // 4 frequencies, spaced by 1 / (width // 4 - 1)
            raise ValueError(f"width={width} must be a multiple of 4 and >= 8 (sin-cos position embeddings)")
        if width % num_heads:
            raise ValueError(f"width={width} is not divisible by num_heads={num_heads}")
        self.use_glu, self.post_ln, self.use_map = flag("use_glu", use_glu), flag("post_ln", post_ln), flag("use_map", use_map)
        self.mixup_alpha = finite_number("mixup_alpha", mixup_alpha, minimum=0)
        super().__init__(**common)
        if self.patch_size > self.image_size:
            raise ValueError(f"patch_size={patch_size} is larger than image_size={self.image_size}")

    def build_model(self) -> nn.Module:
        return ViT(num_classes=self.num_classes, patch_size=self.patch_size, width=self.width, depth=self.depth, mlp_dim=self.mlp_dim,
                   num_heads=self.num_heads, use_glu=self.use_glu, post_ln=self.post_ln, use_map=self.use_map)

    def augment_batch(self, batch: Batch, rng: Rng) -> Batch:
        """Mixup with a Beta(alpha, alpha) weight drawn from the step's seed."""
        if self.mixup_alpha <= 0:
            return batch
        weight = _beta(self.mixup_alpha, rng)
        targets = F.one_hot(batch["targets"], self.num_classes).float()
        mixed = {key: weight * value + (1.0 - weight) * value.roll(1, dims=0) for key, value in (("inputs", batch["inputs"]), ("targets", targets))}
        return batch | mixed


def _beta(alpha: float, rng: Rng) -> float:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rnglib.fold_in(rng, 0))
        return float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())
