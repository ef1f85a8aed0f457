"""A small decoder-only Transformer on text from a random high-order Markov source.

The source is an order-`order` Markov chain over `vocab` symbols whose next-symbol
distributions are drawn from a Dirichlet(`concentration`) by the dataset seed; sequences
start in the chain's stationary distribution and have random lengths (padded, weight 0).
Because the source is known, so is the best possible loss: the entropy rate
H = sum_c pi(c) H(P(. | c)) in nats per token, which `optimal_loss` computes and its calibration
record (records/calibration/markov_lm.json) reports beside the target. Only tokens predicted from a full context are weighted,
so the expected loss of the true source on them is exactly H.

Exercises token and position embeddings, causal self-attention, LayerNorm (pre- or post-),
label smoothing and masked (weighted) losses. The metric is the validation loss (lower is
better); a target below H is rejected.
Targets, budget and step hint are in configs/workload/markov_lm.yaml.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.core.checks import check_choice, finite_number, flag, whole_number
from harness.core.spec import MetricDirection, ParameterType, Tensor
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload

MLP_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MarkovSource:
    """Transition table P[c_1, ..., c_k, next] of an order-k chain over `vocab` symbols."""

    def __init__(self, seed: int, vocab: int, order: int, concentration: float):
        rng = np.random.default_rng([seed, 0x6D61726B])
        self.vocab, self.order = vocab, order
        self.table = rng.dirichlet(np.full(vocab, concentration), size=vocab ** order).reshape((vocab,) * order + (vocab,))
        self.table = np.maximum(self.table, 1e-12)
        self.table /= self.table.sum(-1, keepdims=True)

    def stationary(self, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
        """Stationary distribution over contexts, shape (vocab,) * order, by power iteration."""
        pi = np.full((self.vocab,) * self.order, self.vocab ** -self.order)
        for _ in range(max_iter):
            # pi'[c_2..c_k, x] = sum_{c_1} pi[c_1..c_k] P[c_1..c_k, x]
            new = (pi[..., None] * self.table).sum(0)
            if np.abs(new - pi).sum() < tol:
                return new
            pi = new
        raise RuntimeError("the Markov source's stationary distribution did not converge")

    def entropy_rate(self) -> float:
        """H = sum_c pi(c) H(P(. | c)) in nats per token: the best achievable expected loss."""
        per_context = -(self.table * np.log(self.table)).sum(-1)
        return float((self.stationary() * per_context).sum())

    def sample(self, rng: np.random.Generator, n: int, length: int) -> np.ndarray:
        """`n` sequences of `length` symbols, the first `order` drawn from the stationary law."""
        pi = self.stationary().ravel()
        start = rng.choice(len(pi), size=n, p=pi / pi.sum())
        seqs = np.empty((n, length), dtype=np.int64)
        seqs[:, :self.order] = np.stack(np.unravel_index(start, (self.vocab,) * self.order), axis=1)
        flat = self.table.reshape(-1, self.vocab)
        for t in range(self.order, length):
            context = np.ravel_multi_index(tuple(seqs[:, t - self.order:t].T), (self.vocab,) * self.order)
            cdf = np.cumsum(flat[context], axis=1)
            seqs[:, t] = np.minimum((rng.random((n, 1)) > cdf).sum(1), self.vocab - 1)
        return seqs


def markov_split(source: MarkovSource, rng: np.random.Generator, n: int, seq_len: int, min_len: int) -> Split:
    """Inputs/targets shifted by one, padded after each sequence's random length; weight 1
    only on real targets predicted from a full `order`-symbol context."""
    tokens = source.sample(rng, n, seq_len + 1)
    lengths = rng.integers(min_len, seq_len + 2, size=n)
    positions = np.arange(seq_len + 1)
    pad = source.vocab
    tokens[positions[None, :] >= lengths[:, None]] = pad
    target_pos = positions[1:]
    weights = (target_pos[None, :] >= source.order) & (target_pos[None, :] < lengths[:, None])
    return Split(torch.from_numpy(tokens[:, :-1]), torch.from_numpy(tokens[:, 1:]), torch.from_numpy(weights.astype(np.float32)))


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # padding comes last, so causal masking hides it
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, activation: str, post_ln: bool):
        super().__init__()
        self.post_ln = post_ln
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), MLP_ACTIVATIONS[activation](), nn.Linear(4 * width, width), nn.Dropout(0.0))

    def forward(self, x: Tensor) -> Tensor:
        if self.post_ln:
            x = self.ln1(x + self.attn(x))
            return self.ln2(x + self.mlp(x))
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyDecoder(nn.Module):
    def __init__(self, vocab: int, seq_len: int, width: int, depth: int, heads: int, activation: str, post_ln: bool):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq_len, width)
        self.drop = nn.Dropout(0.0)
        self.blocks = nn.ModuleList(Block(width, heads, activation, post_ln) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width) if not post_ln else nn.Identity()
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.drop(self.tok(tokens) + self.pos.weight[:tokens.shape[1]])  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, vocab)


class MarkovLm(TensorWorkload):
    target_metric_name = "loss"
    target_metric_direction = MetricDirection.MINIMIZE
    data_version = "1"

    def __init__(
        self, *, vocab: int = 16, order: int = 3, concentration: float = 0.2, seq_len: int = 48, min_len: int = 24,
        num_train: int = 4096, num_holdout: int = 512, width: int = 64, depth: int = 2, heads: int = 4,
        activation: str = "gelu", post_ln: bool = False, **common,
    ):
        self.vocab, self.order = whole_number("vocab", vocab), whole_number("order", order)
        self.concentration = finite_number("concentration", concentration, minimum=0, exclusive=True)
        self.seq_len, self.min_len = whole_number("seq_len", seq_len), whole_number("min_len", min_len)
        if not order < min_len <= seq_len + 1:
            raise ValueError(f"need order < min_len <= seq_len + 1 (order={order}, min_len={min_len}, seq_len={seq_len})")
        self.num_train, self.num_holdout = whole_number("num_train", num_train), whole_number("num_holdout", num_holdout)
        self.width, self.depth, self.heads = whole_number("width", width), whole_number("depth", depth), whole_number("heads", heads)
        if width % heads:
            raise ValueError(f"width={width} is not divisible by heads={heads}")
        self.activation, self.post_ln = check_choice("activation", activation, MLP_ACTIVATIONS), flag("post_ln", post_ln)
        super().__init__(**common)
        self.source = MarkovSource(self.dataset_seed, vocab, order, concentration)
        self.optimal_loss = self.source.entropy_rate()

    def data_settings(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("vocab", "order", "concentration", "seq_len", "min_len", "num_train", "num_holdout")}

    def make_splits(self, dataset_seed: int) -> Splits:
        rng = np.random.default_rng([dataset_seed, 1])
        train, validation, test = (markov_split(self.source, rng, n, self.seq_len, self.min_len) for n in (self.num_train, self.num_holdout, self.num_holdout))
        return Splits(train, validation, test, eval_train_size=self.num_holdout)

    def build_model(self) -> nn.Module:
        return TinyDecoder(self.vocab + 1, self.seq_len, self.width, self.depth, self.heads, self.activation, self.post_ln)

    def target_bounds(self) -> tuple[float, float]:
        return (self.optimal_loss, math.inf)

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        types = super().model_params_types
        for name in types:
            if ".attn.qkv." in name:
                types[name] = ParameterType.ATTENTION_QKV if name.endswith("weight") else ParameterType.ATTENTION_BIAS
            elif ".attn.proj." in name:
                types[name] = ParameterType.ATTENTION_OUT if name.endswith("weight") else ParameterType.ATTENTION_BIAS
        return types
