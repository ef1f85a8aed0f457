"""Vision Transformer (Dosovitskiy et al. 2021) as AlgoPerf's ImageNet ViT workload defines it
(big_vision's simplified ViT): fixed 2-D sin-cos position embeddings, no class token,
global average pooling (or a multi-head attention pooling "MAP" head), a tanh pre-logits
layer and a zero-initialised head. Variants: GLU in the MLP, post-LayerNorm blocks, MAP head.

ViT-S/16 is width 384, depth 12, MLP 1536, 6 heads, 16x16 patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workloads.models.init import lecun_normal_


def posemb_sincos_2d(h: int, w: int, width: int, device: torch.device, temperature: float = 10_000.0) -> torch.Tensor:
    """(1, h*w, width) embedding: sin/cos of x then of y at `width // 4` frequencies each."""
    if width % 4:
        raise ValueError(f"width {width} must be a multiple of 4 for sin-cos position embeddings")
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(width // 4, device=device) / (width // 4 - 1))
    y, x = y.flatten()[:, None] * omega, x.flatten()[:, None] * omega
    return torch.cat((x.sin(), x.cos(), y.sin(), y.cos()), dim=1)[None]


def _xavier_linear(in_f: int, out_f: int, bias_std: float = 0.0) -> nn.Linear:
    layer = nn.Linear(in_f, out_f)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.normal_(layer.bias, std=bias_std) if bias_std else nn.init.zeros_(layer.bias)
    return layer


class MlpBlock(nn.Module):
    """Linear -> GELU (-> times a second linear, for GLU) -> dropout -> linear."""

    def __init__(self, width: int, mlp_dim: int, use_glu: bool, dropout: float):
        super().__init__()
        self.linear1 = _xavier_linear(width, mlp_dim, bias_std=1e-6)
        self.glu_linear = _xavier_linear(mlp_dim, mlp_dim, bias_std=1e-6) if use_glu else None
        self.dropout = nn.Dropout(dropout)
        self.linear2 = _xavier_linear(mlp_dim, width, bias_std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.linear1(x), approximate="tanh")
        if self.glu_linear is not None:
            x = x * self.glu_linear(x)
        return self.linear2(self.dropout(x))


class SelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int, dropout: float):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.query, self.key, self.value, self.out = (_xavier_linear(width, width) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T, width)
        b, t, d = x.shape
        q, k, v = (proj(x).view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2) for proj in (self.query, self.key, self.value))
        p = self.dropout.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, heads, T, head_dim)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class EncoderBlock(nn.Module):
    """Attention then MLP, each residual; LayerNorm before each (default) or after each sum."""

    def __init__(self, width: int, mlp_dim: int, num_heads: int, use_glu: bool, post_ln: bool, dropout: float):
        super().__init__()
        self.post_ln = post_ln
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=1e-6), nn.LayerNorm(width, eps=1e-6)
        self.attention = SelfAttention(width, num_heads, dropout)
        self.mlp = MlpBlock(width, mlp_dim, use_glu, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_ln:
            x = self.norm1(x + self.dropout(self.attention(x)))
            return self.norm2(x + self.dropout(self.mlp(x)))
        x = x + self.dropout(self.attention(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class MAPHead(nn.Module):
    """Multi-head attention pooling: a learned probe attends over the tokens."""

    def __init__(self, width: int, mlp_dim: int, num_heads: int):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        nn.init.xavier_uniform_(self.probe)
        self.attention = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = MlpBlock(width, mlp_dim, use_glu=False, dropout=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, width) -> (B, width)
        x = self.attention(self.probe.expand(len(x), -1, -1), x, x, need_weights=False)[0]
        return (x + self.mlp(self.norm(x)))[:, 0]


class ViT(nn.Module):
    def __init__(self, *, num_classes: int = 1000, patch_size: int = 16, width: int = 384, depth: int = 12, mlp_dim: int = 1536,
                 num_heads: int = 6, use_glu: bool = False, post_ln: bool = False, use_map: bool = False, dropout: float = 0.0):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(width, mlp_dim, num_heads, use_glu, post_ln, dropout) for _ in range(depth))
        self.encoder_norm = None if post_ln else nn.LayerNorm(width, eps=1e-6)
        self.map_head = MAPHead(width, mlp_dim, num_heads) if use_map else None
        self.pre_logits = nn.Linear(width, width)
        self.head = nn.Linear(width, num_classes)
        for layer in (self.patch_embed, self.pre_logits):
            lecun_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W)
        x = self.patch_embed(x)  # (B, width, H/p, W/p)
        b, d, h, w = x.shape
        x = x.reshape(b, d, h * w).transpose(1, 2) + posemb_sincos_2d(h, w, d, x.device).to(x.dtype)  # (B, T, width)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        x = self.map_head(x) if self.map_head is not None else x.mean(dim=1)  # (B, width)
        return self.head(torch.tanh(self.pre_logits(x)))  # (B, classes)
