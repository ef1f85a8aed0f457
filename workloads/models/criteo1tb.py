"""DLRM-small, AlgoPerf's click-through-rate model for Criteo 1TB, with its variants as options.

Implements `algoperf/workloads/criteo1tb/criteo1tb_pytorch/models.py`: `DlrmSmall` (bottom
MLP on the 13 dense features, one embedding table for the 26 categorical ids, dot-product
interaction, top MLP) and, with `use_resnet=True`, `DLRMResNet` (residual MLP blocks and the
embeddings concatenated instead of the dot interaction). The same initialisation, module
order and embedding table (4 chunks of `vocab_size / 4` rows, one parameter each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from harness.core.spec import Tensor


class Residual(nn.Sequential):
    """`x + layers(x)`."""

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


class DotInteract(nn.Module):
    """Pairwise dot products of the dense vector and the F embedded features (the upper
    triangle, diagonal included), appended to the dense vector: (B, D), (B, F, D) ->
    (B, D + (F + 1)(F + 2) / 2)."""

    rows: Tensor
    columns: Tensor

    def __init__(self, num_sparse_features: int):
        super().__init__()
        rows, columns = torch.triu_indices(num_sparse_features + 1, num_sparse_features + 1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("columns", columns, persistent=False)

    def forward(self, dense: Tensor, sparse: Tensor) -> Tensor:
        combined = torch.cat([dense.unsqueeze(1), sparse], dim=1)  # (B, F + 1, D)
        interactions = torch.bmm(combined, combined.transpose(1, 2))  # (B, F + 1, F + 1)
        return torch.cat([dense, interactions[:, self.rows, self.columns]], dim=1)


def _mlp_block(fan_in: int, fan_out: int, last: bool, use_layer_norm: bool, dropout: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(fan_in, fan_out)]
    if not last:
        layers.append(nn.ReLU(inplace=True))
        if use_layer_norm:
            layers.append(nn.LayerNorm(fan_out, eps=1e-6))
    if dropout:
        layers.append(nn.Dropout(0.0))  # AlgoPerf's default dropout rate; model_fn may set another
    return layers


class DLRM(nn.Module):
    """DLRM-small: (B, 13 + 26) float inputs (dense features, then categorical ids as floats)
    -> (B, 1) click logits.

    Args:
        vocab_size: rows of the embedding table; ids are taken mod `vocab_size`. A multiple of 4.
        num_dense_features, num_sparse_features: the input's two parts.
        mlp_bottom_dims: widths of the bottom MLP (ReLU after each layer).
        mlp_top_dims: widths of the top MLP, the last 1 (ReLU after all but the last; dropout
            after the second-to-last).
        embed_dim: embedding width; without `use_resnet`, `mlp_bottom_dims[-1]` must equal it.
        use_layer_norm: LayerNorm (eps 1e-6) after every ReLU and on the embeddings
            (AlgoPerf's `criteo1tb_layernorm`).
        embedding_init_multiplier: embeddings start uniform in [0, multiplier); None for
            `1 / sqrt(vocab_size)` (AlgoPerf's `criteo1tb_embed_init` uses 1.0).
        use_resnet: AlgoPerf's `DLRMResNet` (`criteo1tb_resnet`): residual MLP layers (all
            bottom layers but the first, all top layers but the first and last) and the
            embeddings concatenated to the bottom MLP's output instead of the dot interaction.
            (AlgoPerf's `DLRMResNet` ignores `use_layer_norm` and `embedding_init_multiplier`;
            here they apply to it too. No AlgoPerf workload combines them.)

    Raises:
        ValueError: `vocab_size` is not a multiple of 4, or the bottom MLP's output does not
            fit the dot interaction or a residual layer.
    """

    num_chunks = 4

    def __init__(self, vocab_size: int, num_dense_features: int = 13, num_sparse_features: int = 26,
                 mlp_bottom_dims: Sequence[int] = (512, 256, 128), mlp_top_dims: Sequence[int] = (1024, 1024, 512, 256, 1),
                 embed_dim: int = 128, use_layer_norm: bool = False, embedding_init_multiplier: float | None = None,
                 use_resnet: bool = False):
        super().__init__()
        if vocab_size % self.num_chunks:
            raise ValueError(f"vocab_size={vocab_size} is not a multiple of {self.num_chunks}")
        if not use_resnet and mlp_bottom_dims[-1] != embed_dim:
            raise ValueError(f"mlp_bottom_dims[-1]={mlp_bottom_dims[-1]} must equal embed_dim={embed_dim} (dot interaction)")
        self.vocab_size, self.num_dense_features, self.num_sparse_features = vocab_size, num_dense_features, num_sparse_features
        self.embed_dim, self.use_resnet = embed_dim, use_resnet

        # AlgoPerf keeps one table in chunks (one parameter each), as its JAX twin does.
        scale = 1.0 / math.sqrt(vocab_size) if embedding_init_multiplier is None else embedding_init_multiplier
        for i in range(self.num_chunks):
            chunk = nn.Parameter(torch.empty(vocab_size // self.num_chunks, embed_dim))
            nn.init.uniform_(chunk, 0.0, scale)
            self.register_parameter(f"embedding_chunk_{i}", chunk)

        bottom: list[nn.Module] = []
        fan_in = num_dense_features
        for i, width in enumerate(mlp_bottom_dims):
            layers = _mlp_block(fan_in, width, last=False, use_layer_norm=use_layer_norm, dropout=False)
            bottom += self._blocks(layers, i > 0, fan_in, width)
            fan_in = width
        self.bot_mlp = nn.Sequential(*bottom)
        for linear in self._linears(self.bot_mlp):  # initialised before the top MLP is built, as in AlgoPerf (same RNG draws)
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, 0.0, math.sqrt(1.0 / linear.out_features))

        if use_resnet:
            fan_in = num_sparse_features * embed_dim + mlp_bottom_dims[-1]
        else:
            self.dot_interact = DotInteract(num_sparse_features)
            fan_in = embed_dim + (num_sparse_features + 1) * (num_sparse_features + 2) // 2
        top: list[nn.Module] = []
        last = len(mlp_top_dims) - 1
        for i, width in enumerate(mlp_top_dims):
            layers = _mlp_block(fan_in, width, last=i == last, use_layer_norm=use_layer_norm, dropout=i == last - 1)
            top += self._blocks(layers, 0 < i < last, fan_in, width)
            fan_in = width
        self.top_mlp = nn.Sequential(*top)
        for linear in self._linears(self.top_mlp):
            nn.init.normal_(linear.weight, 0.0, math.sqrt(2.0 / (linear.in_features + linear.out_features)))
            nn.init.normal_(linear.bias, 0.0, math.sqrt(1.0 / linear.out_features))
        self.embed_ln = nn.LayerNorm(embed_dim, eps=1e-6) if use_layer_norm else None

    def _blocks(self, layers: list[nn.Module], residual: bool, fan_in: int, fan_out: int) -> list[nn.Module]:
        """DlrmSmall's MLP layers stay flat (its parameter names); DLRMResNet's are blocks."""
        if not self.use_resnet:
            return layers
        if residual and fan_in != fan_out:
            raise ValueError(f"a residual layer of {fan_in} -> {fan_out} features: use_resnet needs equal widths")
        return [Residual(*layers) if residual else nn.Sequential(*layers)]

    @staticmethod
    def _linears(mlp: nn.Module) -> list[nn.Linear]:
        return [module for module in mlp.modules() if isinstance(module, nn.Linear)]

    def embedding_table(self) -> Tensor:
        """The whole table, (vocab_size, embed_dim)."""
        return torch.cat([getattr(self, f"embedding_chunk_{i}") for i in range(self.num_chunks)])

    def forward(self, inputs: Tensor) -> Tensor:
        batch = inputs.shape[0]
        dense, sparse = torch.split(inputs, [self.num_dense_features, self.num_sparse_features], dim=1)
        bottom = self.bot_mlp(dense)  # (B, mlp_bottom_dims[-1])
        ids = sparse.to(torch.int64).reshape(-1) % self.vocab_size
        embedded = self.embedding_table()[ids].reshape(batch, self.num_sparse_features, self.embed_dim)
        if self.embed_ln is not None:
            embedded = self.embed_ln(embedded)
        if self.use_resnet:
            features = torch.cat([bottom, embedded.reshape(batch, -1)], dim=1)
        else:
            features = self.dot_interact(bottom, embedded)
        return self.top_mlp(features)
