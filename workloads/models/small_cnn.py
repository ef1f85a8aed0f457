"""A small VGG-style CNN for CPU image workloads: stages of a 3x3 convolution, an optional
normalization, an activation and a 2x2 max-pool, then one linear classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from harness.core.checks import check_choice, whole_numbers

GROUPS = 8
NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,
    "batch": nn.BatchNorm2d,
    "group": lambda channels: nn.GroupNorm(min(GROUPS, channels), channels),
}


def check_settings(channels: object, norm: object, image_size: int) -> tuple[tuple[int, ...], str]:
    """`channels` (one entry per stage) and `norm` as `small_cnn` needs them for `image_size`
    images. Raises ValueError naming the setting: channels not a non-empty list of integers
    >= 1, more stages than the image can be halved, an unknown norm, or a stage's channels
    that GroupNorm's groups do not divide."""
    channels, norm = whole_numbers("channels", channels), check_choice("norm", norm, NORMS)
    if image_size >> len(channels) == 0:
        raise ValueError(f"channels={list(channels)} has {len(channels)} stages, but each halves the image and a {image_size}-pixel image "
                         f"allows {image_size.bit_length() - 1}")
    if norm == "group" and any(c > GROUPS and c % GROUPS for c in channels):
        raise ValueError(f"channels={list(channels)} must each be at most {GROUPS} or a multiple of {GROUPS} for norm group (GroupNorm's groups)")
    return channels, norm


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
