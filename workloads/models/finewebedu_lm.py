"""AlgoPerf's decoder-only Transformer language model (the `finewebedu_lm` workload).

Follows `algoperf/workloads/finewebedu_lm/finewebedu_lm_pytorch/models.py` of
mlcommons/algorithmic-efficiency at commit 4c37f2aa208f62205aaaeb2ea16e44b0d2656f60 (itself
derived from the plainLM codebase): pre-RMSNorm blocks; attention with one fused bias-free
QKV projection, rotary position embeddings (base 500,000, rotating adjacent pairs of
features), QK normalisation and a learned attention scale; a gated MLP whose hidden width
is rounded up to a multiple of 256; a final RMSNorm and an output projection tied to the
token embedding. At the full size (vocabulary 50,257, 1,024 tokens, width 1,024, 12 layers,
8 heads, MLP width 4,096) it has 252,815,372 parameters.

Kept from AlgoPerf's PyTorch module on purpose, where its JAX twin or the usual recipe differ:
the MLP gate is `nn.GLU` (a sigmoid gate, although the workload's `activation` property says
"silu"); QK normalisation adds its epsilon after dividing by the norm; the attention scale
starts at log2(L^2 - L) and multiplies the queries, and the softmax gets no 1/sqrt(d).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

MLP_MULTIPLE_OF = 256
ROPE_BASE = 500_000.0
INIT_STD = 0.02


def rope_angles(head_dim: int, seq_len: int, base: float = ROPE_BASE) -> Tensor:
    """Cosines and sines of the rotary angles: (seq_len, head_dim // 2, 2), last axis (cos, sin).

    Raises:
        ValueError: `head_dim` is odd.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, not {head_dim}")
    inverse_frequencies = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inverse_frequencies)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each adjacent feature pair (2i, 2i+1) of x (B, T, heads, head_dim) by the
    angles (T, head_dim // 2, 2) of its position; computed in float32, returned in x's dtype."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, T, nh, hd/2, 2)
    cos, sin = angles[:, None, :, 0], angles[:, None, :, 1]  # (T, 1, hd/2): broadcast over heads
    real, imaginary = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imaginary * sin, imaginary * cos + real * sin], dim=-1)
    return rotated.flatten(-2).type_as(x)


class Attention(nn.Module):
    """Causal self-attention with RoPE, QK normalisation and a learned scale."""

    def __init__(self, width: int, num_heads: int, seq_len: int, qknorm_epsilon: float):
        super().__init__()
        self.num_heads, self.head_dim, self.eps = num_heads, width // num_heads, qknorm_epsilon
        self.w_qkv = nn.Linear(width, 3 * width, bias=False)
        self.w_out = nn.Linear(width, width, bias=False)
        # The softmax is sharpened by this scale alone (no 1/sqrt(d)); log2(L^2 - L) as in AlgoPerf.
        self.attn_scale = nn.Parameter(torch.tensor(math.log2(seq_len**2 - seq_len)))

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim) for t in self.w_qkv(x).split(width, dim=-1))
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hd)
        q = q / q.norm(dim=-1, keepdim=True) + self.eps
        k = k / k.norm(dim=-1, keepdim=True) + self.eps
        out = F.scaled_dot_product_attention(q * self.attn_scale, k, v, is_causal=True, scale=1.0)
        return self.w_out(out.transpose(1, 2).reshape(batch, length, width))


class GatedMLP(nn.Module):
    """fc2(GLU(fc1(x))): fc1 makes the value and gate halves, GLU is value * sigmoid(gate)."""

    def __init__(self, width: int, mlp_dim: int):
        super().__init__()
        hidden = MLP_MULTIPLE_OF * math.ceil(mlp_dim / MLP_MULTIPLE_OF)
        self.fc1 = nn.Linear(width, 2 * hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.glu(self.fc1(x), dim=-1))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int, seq_len: int, rmsnorm_epsilon: float, qknorm_epsilon: float):
        super().__init__()
        self.attn_norm = nn.RMSNorm(width, eps=rmsnorm_epsilon)
        self.attn = Attention(width, num_heads, seq_len, qknorm_epsilon)
        self.mlp_norm = nn.RMSNorm(width, eps=rmsnorm_epsilon)
        self.mlp = GatedMLP(width, mlp_dim)

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x), angles)
        return x + self.mlp(self.mlp_norm(x))


class DecoderOnlyTransformer(nn.Module):
    """Token ids (B, T) with T <= seq_len -> next-token logits (B, T, vocab_size).

    Initialisation as AlgoPerf's: every linear and embedding weight N(0, 0.02), the residual
    branches' output projections (`w_out`, `fc2`) N(0, 0.02 / sqrt(2 * num_layers)), norms 1.

    Raises:
        ValueError: `width` is not divisible by `num_heads`, or the head dimension is odd.
    """

    rope: Tensor

    def __init__(self, vocab_size: int = 50257, seq_len: int = 1024, width: int = 1024, num_layers: int = 12, num_heads: int = 8,
                 mlp_dim: int = 4096, rmsnorm_epsilon: float = 1e-6, qknorm_epsilon: float = 1e-6, tie_embeddings: bool = True):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width={width} is not divisible by num_heads={num_heads}")
        self.seq_len = seq_len
        self.embed_tokens = nn.Embedding(vocab_size, width)
        self.layers = nn.ModuleList(Block(width, num_heads, mlp_dim, seq_len, rmsnorm_epsilon, qknorm_epsilon) for _ in range(num_layers))
        self.out_norm = nn.RMSNorm(width, eps=rmsnorm_epsilon)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        self.register_buffer("rope", rope_angles(width // num_heads, seq_len), persistent=False)
        self._init_weights(num_layers)
        if tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _init_weights(self, num_layers: int) -> None:
        for name, p in self.named_parameters():
            if name.endswith(("w_out.weight", "fc2.weight")):
                nn.init.normal_(p, std=INIT_STD / math.sqrt(2 * num_layers))
            elif name.endswith(("w_qkv.weight", "fc1.weight", "lm_head.weight", "embed_tokens.weight")):
                nn.init.normal_(p, std=INIT_STD)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) int token ids -> (B, T, vocab_size) logits.

        Raises:
            ValueError: T exceeds `seq_len` (the rotary table's length).
        """
        length = tokens.shape[1]
        if length > self.seq_len:
            raise ValueError(f"sequence of {length} tokens is longer than seq_len={self.seq_len}")
        x = self.embed_tokens(tokens)  # (B, T, width)
        for layer in self.layers:
            x = layer(x, self.rope[:length])
        return self.lm_head(self.out_norm(x))
