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

from harness import rng as rnglib
from harness.spec import Batch, Rng
from workloads.imagenet_resnet50 import ImagenetWorkload
from workloads.models.vit import ViT


class ImagenetVit(ImagenetWorkload):
    randaugment = True

    def __init__(self, *, patch_size: int = 16, width: int = 384, depth: int = 12, mlp_dim: int = 1536, num_heads: int = 6,
                 use_glu: bool = False, post_ln: bool = False, use_map: bool = False, mixup_alpha: float = 0.2, **common):
        self.patch_size, self.width, self.depth, self.mlp_dim, self.num_heads = int(patch_size), int(width), int(depth), int(mlp_dim), int(num_heads)
        self.use_glu, self.post_ln, self.use_map, self.mixup_alpha = bool(use_glu), bool(post_ln), bool(use_map), float(mixup_alpha)
        super().__init__(**common)

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
