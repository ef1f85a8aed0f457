"""AlgoPerf's Conformer speech encoder with a CTC head
(algoperf/workloads/librispeech_conformer/librispeech_pytorch/models.py, after init2winit's).

Raw audio -> log-mel features -> SpecAugment (training only) -> two stride-2 convolutions ->
Conformer blocks (half feed-forward, self-attention, convolution, half feed-forward, layer
norm) -> layer norm -> per-frame logits over the SentencePiece vocabulary, blank = 0.
Paddings (1.0 past an utterance's end) travel with the activations and keep padded frames out
of attention and batch statistics. The parts DeepSpeech shares (`LayerNorm`, `MaskedBatchNorm`,
`Subsample`, `init_weights`) live here.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from workloads.data.librispeech import NUM_MEL_BINS, LogMelFrontend, SpecAugment

ACTIVATIONS = {"swish": F.silu, "gelu": F.gelu}


class LayerNorm(nn.Module):
    """Layer norm over the last axis with scale `1 + scale` (zero-initialized), epsilon 1e-6."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, 1 + self.scale, self.bias, 1e-6)


class MaskedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over (B, T, D) activations whose statistics skip padded frames; padded
    frames come out 0. Scale `1 + weight` (zero-initialized), running averages with
    momentum 0.001, epsilon 0.001 (AlgoPerf's `BatchNorm`). A `_BatchNorm`, so that
    `update_batch_norm=False` freezes its running statistics. `sync`: under DDP the batch
    statistics are summed over ranks (AlgoPerf's DeepSpeech does; its Conformer does not)."""

    def __init__(self, dim: int, sync: bool = False):
        super().__init__(dim, eps=1e-3, momentum=1e-3)
        self.sync = sync

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        """(B, T, D) activations, (B, T) paddings -> (B, T, D)."""
        mask = (1 - paddings)[:, :, None]
        if self.training:
            total, count = (x * mask).sum(dim=(0, 1)), mask.sum()
            synced = self.sync and dist.is_available() and dist.is_initialized()
            if synced:
                total, count = dist_fn.all_reduce(total), dist_fn.all_reduce(count)
            mean = total / count
            squares = (torch.square(x - mean) * mask).sum(dim=(0, 1))
            var = (dist_fn.all_reduce(squares) if synced else squares) / count
            with torch.no_grad():
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) * (1 + self.weight) * torch.rsqrt(var + self.eps) + self.bias) * mask


def same_padding(size: int, stride: int = 2, kernel: int = 3) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


class ConvSubsampling(nn.Module):
    """A 3x3 convolution of stride 2 over (time, frequency) with SAME padding, then the
    activation; a frame is padding if the frame at twice its index was."""

    def __init__(self, in_channels: int, out_channels: int, activation: str = "relu"):
        super().__init__()
        self.kernel = nn.Parameter(nn.init.xavier_uniform_(torch.empty(out_channels, in_channels, 3, 3)))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.activation = torch.tanh if activation == "tanh" else F.relu

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, F), (B, T) -> (B, C', ceil(T/2), ceil(F/2)), (B, ceil(T/2))."""
        x = F.pad(x, (*same_padding(x.shape[3]), *same_padding(x.shape[2])))
        x = self.activation(F.conv2d(x, self.kernel, self.bias, stride=2))
        paddings = paddings[:, ::2]
        return x * (1 - paddings)[:, None, :, None], paddings


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(1, length, dim): sines then cosines of timescales from 1 to 10,000."""
    timescales = torch.exp(torch.arange(dim // 2, device=device) * -(math.log(10_000) / (dim // 2 - 1)))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * timescales
    return F.pad(torch.cat([torch.sin(angles), torch.cos(angles)], dim=1), (0, dim % 2))[None]


class Subsample(nn.Module):
    """Features (B, F, 80) -> two `ConvSubsampling`s -> each frame's channels x bins
    flattened -> Linear to `dim` -> (+ sinusoidal positions if `positional`) -> dropout:
    (B, ceil(ceil(F/2)/2), dim)."""

    def __init__(self, dim: int, activation: str = "relu", positional: bool = True, dropout: float = 0.1, num_bins: int = NUM_MEL_BINS):
        super().__init__()
        self.conv1 = ConvSubsampling(1, dim, activation)
        self.conv2 = ConvSubsampling(dim, dim, activation)
        self.linear = nn.Linear(dim * math.ceil(math.ceil(num_bins / 2) / 2), dim)
        self.positional = positional
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, paddings = self.conv1(features[:, None], paddings)
        x, paddings = self.conv2(x, paddings)
        batch, channels, length, bins = x.shape
        x = self.linear(x.permute(0, 2, 3, 1).reshape(batch, length, bins * channels))
        if self.positional:
            x = x + sinusoidal_positions(length, x.shape[2], x.device)
        return self.dropout(x), paddings


class FeedForward(nn.Module):
    """LayerNorm -> Linear(D, 4D) -> activation -> Linear(4D, D) -> dropout, padded frames 0."""

    def __init__(self, dim: int, expansion: int, activation: str, dropout: float):
        super().__init__()
        self.ln = LayerNorm(dim)
        self.linear1 = nn.Linear(dim, dim * expansion)
        self.linear2 = nn.Linear(dim * expansion, dim)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.linear1(self.ln(x))
        # AlgoPerf's feed-forward GELU is the tanh approximation (JAX's default); its conv block's is exact
        x = F.gelu(x, approximate="tanh") if self.activation == "gelu" else F.silu(x)
        return self.dropout(self.linear2(x * mask) * mask)


class SelfAttention(nn.Module):
    """LayerNorm -> multi-head self-attention over unpadded frames with a learned per-dim
    query scale (`1.442695041 * softplus(query_scale)`, 1 at init), output times
    `attention_temperature` -> dropout."""

    def __init__(self, dim: int, num_heads: int, attention_temperature: float, dropout: float):
        super().__init__()
        self.num_heads, self.attention_temperature = num_heads, attention_temperature
        self.ln = LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.query_scale = nn.Parameter(torch.zeros(dim // num_heads))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (t.view(batch, length, self.num_heads, -1) for t in self.in_proj(self.ln(x)).split(dim, dim=2))
        q = q * (1.442695041 * F.softplus(self.query_scale))  # 1 / softplus(0): the scale starts at 1
        attend = (paddings == 0)[:, None, None, :]  # (B, 1, 1, T) keys
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attend)
        out = out.transpose(1, 2).reshape(batch, length, dim) * self.attention_temperature
        return self.dropout(self.out_proj(out))


class ConvolutionBlock(nn.Module):
    """LayerNorm -> GLU of two linears -> depthwise convolution over time (kernel 5) ->
    masked batch norm -> activation -> linear -> dropout."""

    def __init__(self, dim: int, kernel_size: int, activation: str, dropout: float):
        super().__init__()
        self.ln = LayerNorm(dim)
        self.lin1 = nn.Linear(dim, dim)
        self.lin2 = nn.Linear(dim, dim)
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, padding="same", bias=False, groups=dim)
        self.bn = MaskedBatchNorm(dim)
        self.lin3 = nn.Linear(dim, dim)
        self.activation = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        x = self.ln(x)
        x = F.glu(torch.cat([self.lin1(x), self.lin2(x)], dim=2)) * (1 - paddings)[:, :, None]
        x = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.lin3(self.activation(self.bn(x, paddings))))


class ConformerBlock(nn.Module):
    """x + FF/2, + attention, + convolution, + FF/2, then a LayerNorm if `post_layer_norm`."""

    def __init__(self, dim: int, num_heads: int, expansion: int, kernel_size: int, activation: str, attention_temperature: float,
                 post_layer_norm: bool, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(dim, expansion, activation, dropout)
        self.mhsa = SelfAttention(dim, num_heads, attention_temperature, dropout)
        self.conv = ConvolutionBlock(dim, kernel_size, activation, dropout)
        self.ff2 = FeedForward(dim, expansion, activation, dropout)
        self.ln = LayerNorm(dim) if post_layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        mask = (1 - paddings)[:, :, None]
        x = x + 0.5 * self.ff1(x, mask)
        x = x + self.mhsa(x, paddings)
        x = x + self.conv(x, paddings)
        x = x + 0.5 * self.ff2(x, mask)
        return self.ln(x)


def init_weights(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases of every Linear and Conv1d (AlgoPerf's `initialize`)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class Conformer(nn.Module):
    """AlgoPerf's `ConformerEncoderDecoder`. Defaults are AlgoPerf's full size (32,321,792
    parameters); `post_layer_norm=False` (variant layernorm) drops each block's final
    LayerNorm, `activation="gelu"` (variant gelu) replaces swish, `attention_temperature`
    1.6 is variant attention_temperature."""

    def __init__(self, vocab_size: int = 1024, encoder_dim: int = 512, num_heads: int = 8, num_layers: int = 4, expansion: int = 4,
                 kernel_size: int = 5, activation: str = "swish", attention_temperature: float = 1.0, post_layer_norm: bool = True,
                 use_specaug: bool = True, freq_mask_count: int = 2, time_mask_count: int = 10, dropout: float = 0.1):
        super().__init__()
        self.use_specaug = use_specaug
        self.preprocessor = LogMelFrontend()
        self.specaug = SpecAugment(freq_mask_count, time_mask_count)
        self.subsample = Subsample(encoder_dim, dropout=dropout)
        self.conformers = nn.ModuleList([
            ConformerBlock(encoder_dim, num_heads, expansion, kernel_size, activation, attention_temperature, post_layer_norm, dropout)
            for _ in range(num_layers)])
        self.ln = LayerNorm(encoder_dim)
        self.lin = nn.Linear(encoder_dim, vocab_size)
        init_weights(self)

    def forward(self, audio: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) samples and paddings -> (B, T', vocab) logits and (B, T') paddings,
        T' = ceil(ceil(F / 2) / 2) of the F = (T - 401) // 160 + 1 feature frames."""
        x, paddings = self.preprocessor(audio, paddings)
        if self.training and self.use_specaug:
            x = self.specaug(x, paddings)
        x, paddings = self.subsample(x, paddings)
        for block in self.conformers:
            x = block(x, paddings)
        return self.lin(self.ln(x)), paddings
