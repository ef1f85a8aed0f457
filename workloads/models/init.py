"""Parameter initialisation shared by AlgoPerf's PyTorch models."""

from __future__ import annotations

import math

import torch
from torch import nn


def lecun_normal_(weight: torch.Tensor) -> None:
    """Normal of variance 1/fan_in truncated at 2 standard deviations (0.8796: the std of a unit
    normal cut at +-2), in place; AlgoPerf's `algoperf/init_utils.py` (`pytorch_default_init`)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
