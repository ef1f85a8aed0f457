"""AlgoPerf's PyTorch U-Net for fastMRI reconstruction (algoperf/workloads/fastmri/
fastmri_pytorch/models.py, adapted there from facebookresearch/fastMRI's fastmri/models/unet.py).

Module names and nesting are AlgoPerf's (`down_sample_layers.0.conv_layers.0.weight`, ...,
`up_conv.3.1.weight` the output layer), so parameter names match AlgoPerf's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workloads.models.init import lecun_normal_


class ChannelDropout(nn.Dropout):
    """Dropout of whole channels (`F.dropout2d`, AlgoPerf's `CustomDropout2d`) on (B, C, H, W).
    An `nn.Dropout` so that `harness.plugins.tensor_workload.set_dropout` sets its rate."""

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout2d(x, self.p, training=self.training)


def _activation(use_tanh: bool) -> nn.Module:
    return nn.Tanh() if use_tanh else nn.LeakyReLU(negative_slope=0.2, inplace=True)


class ConvBlock(nn.Sequential):
    """Two (3x3 conv without bias -> norm -> activation -> channel dropout) layers:
    (B, in_chans, H, W) -> (B, out_chans, H, W). The norm is InstanceNorm2d (no affine
    parameters) or, with `use_layer_norm`, a LayerNorm over (C, H, W) with a per-channel
    scale and shift (GroupNorm with one group, eps 1e-6), as AlgoPerf's."""

    def __init__(self, in_chans: int, out_chans: int, use_tanh: bool, use_layer_norm: bool, dropout_rate: float):
        def norm() -> nn.Module:
            return nn.GroupNorm(1, out_chans, eps=1e-6) if use_layer_norm else nn.InstanceNorm2d(out_chans)

        activation = _activation(use_tanh)
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False), norm(), activation, ChannelDropout(dropout_rate),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False), norm(), activation, ChannelDropout(dropout_rate),
        )


class TransposeConvBlock(nn.Sequential):
    """2x2 stride-2 transposed conv without bias -> InstanceNorm2d -> activation:
    (B, in_chans, H, W) -> (B, out_chans, 2H, 2W). InstanceNorm even with `use_layer_norm`,
    as AlgoPerf's."""

    def __init__(self, in_chans: int, out_chans: int, use_tanh: bool):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            _activation(use_tanh),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): (B, in_chans, H, W) -> (B, out_chans, H, W).

    `num_pool_layers` levels of ConvBlock + 2x2 average pooling with `num_channels` doubling
    per level, a bottleneck ConvBlock, then per level a TransposeConvBlock, concatenation with
    the skip connection and a ConvBlock; a 1x1 conv (with bias) gives the output. Conv
    weights are LeCun-normal truncated at 2 std, biases 0 (AlgoPerf's `pytorch_default_init`).
    An odd size is handled as AlgoPerf's: the upsampled map is reflect-padded by one on the
    right/bottom.
    """

    def __init__(self, in_chans: int = 1, out_chans: int = 1, num_channels: int = 32, num_pool_layers: int = 4,
                 use_tanh: bool = False, use_layer_norm: bool = False, dropout_rate: float = 0.0):
        super().__init__()
        if num_channels < 1 or num_pool_layers < 1:
            raise ValueError(f"num_channels={num_channels} and num_pool_layers={num_pool_layers} must be at least 1")
        def block(i: int, o: int) -> ConvBlock:
            return ConvBlock(i, o, use_tanh=use_tanh, use_layer_norm=use_layer_norm, dropout_rate=dropout_rate)

        self.down_sample_layers = nn.ModuleList([block(in_chans, num_channels)])
        ch = num_channels
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(block(ch, ch * 2))
            ch *= 2
        self.conv = block(ch, ch * 2)
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch, use_tanh))
            self.up_conv.append(block(ch * 2, ch))
            ch //= 2
        self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch, use_tanh))
        self.up_conv.append(nn.Sequential(block(ch * 2, ch), nn.Conv2d(ch, out_chans, kernel_size=1)))
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                lecun_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for layer in self.down_sample_layers:
            x = layer(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        x = self.conv(x)
        for transpose_conv, conv in zip(self.up_transpose_conv, self.up_conv, strict=True):
            skip = skips.pop()
            x = transpose_conv(x)
            pad_right, pad_bottom = int(x.shape[-1] != skip.shape[-1]), int(x.shape[-2] != skip.shape[-2])
            if pad_right or pad_bottom:
                x = F.pad(x, [0, pad_right, 0, pad_bottom], mode="reflect")
            x = conv(torch.cat([x, skip], dim=1))  # upsampled first, as AlgoPerf's
        return x

