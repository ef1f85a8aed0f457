"""A small VGG-style CNN for CPU image workloads: stages of a 3x3 convolution, an optional
normalization, an activation and a 2x2 max-pool, then one linear classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(min(8, channels), channels),
}


def small_cnn(in_channels: int, image_size: int, channels: Sequence[int], activation: Callable[[], nn.Module], norm: str, num_classes: int) -> nn.Sequential:
    """(B, in_channels, image_size, image_size) -> (B, num_classes); each stage halves the size."""
    if norm not in NORMS:
        raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")
    make_norm = NORMS[norm]
    layers: list[nn.Module] = []
    c_in, size = in_channels, image_size
    for c_out in channels:
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=make_norm is None))
        if make_norm is not None:
            layers.append(make_norm(c_out))
        layers += [activation(), nn.MaxPool2d(2)]
        c_in, size = c_out, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.0), nn.Linear(c_in * size * size, num_classes))
