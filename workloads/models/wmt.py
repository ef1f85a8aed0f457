"""The encoder-decoder Transformer of AlgoPerf's WMT workload, and its beam search.

Source: `algoperf/workloads/wmt/wmt_pytorch/models.py` (model) and `.../decode.py` (beam
search, a port of flax's WMT example). Full size: a 32,000-token vocabulary whose embedding
is shared by the encoder, the decoder and the output layer (logits are the decoder's
output times the embedding, divided by sqrt(d_model)), d_model 1024, 16 heads, feed-forward
width 1024, 6 encoder and 6 decoder layers, pre-LayerNorm (with a final LayerNorm after each
stack), ReLU, no biases in attention, fixed sin/cos positions for up to 256 tokens, dropout
0.1. Variants (constructor options): post-LayerNorm, attention temperature (queries times
`attention_temp`), GLU with tanh. Token 0 is padding everywhere: attention never looks at it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

EOS_ID = 2
"""SentencePiece's end-of-sentence id, which AlgoPerf's vocabulary keeps."""
NEG_INF = -1.0e7
"""The beam search's stand-in for minus infinity (AlgoPerf's)."""
MASKED = -1.0e10
"""Added to the scores of keys a query must not see (AlgoPerf's additive mask): a row with
no visible key stays finite (uniform attention) instead of NaN."""
Cache = dict[str, torch.Tensor]
"""Decoder self-attention keys and values of the positions decoded so far, by layer."""

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "tanh": torch.tanh}


def _linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """AlgoPerf's init: Xavier-uniform weights, biases drawn from N(0, 1e-6^2)."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.normal_(layer.bias, std=1e-6)
    return layer


def attention_bias(query_keep: torch.Tensor, key_keep: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """(B, 1, Lq, Lk) additive mask: 0 where query i (`query_keep` (B, Lq), True for a real
    token, or for the same segment) may attend to key j, `MASKED` elsewhere."""
    keep = query_keep[:, :, None] & key_keep[:, None, :]
    if causal:
        keep = keep & torch.ones(keep.shape[-2:], dtype=torch.bool, device=keep.device).tril()
    return torch.zeros(keep.shape, device=keep.device).masked_fill(~keep, MASKED)[:, None]


def segment_bias(query_segments: torch.Tensor, key_segments: torch.Tensor) -> torch.Tensor:
    """(B, 1, Lq, Lk) additive mask that keeps packed examples apart: `MASKED` between
    tokens of different segments (segment ids (B, L), as AlgoPerf's packing writes them)."""
    same = query_segments[:, :, None] == key_segments[:, None, :]
    return torch.zeros(same.shape, device=same.device).masked_fill(~same, MASKED)[:, None]


class SinusoidalPositions(nn.Module):
    """Adds fixed position encodings: sin of d_model // 2 frequencies, then their cos."""

    table: torch.Tensor

    def __init__(self, d_model: int, max_len: int = 256):
        super().__init__()
        position = torch.arange(max_len)[:, None]
        frequencies = torch.exp(torch.arange(d_model // 2) * (-math.log(10_000.0) / (d_model // 2 - 1)))
        table = torch.zeros(max_len, d_model)
        table[:, : d_model // 2] = torch.sin(position * frequencies)
        table[:, d_model // 2 : 2 * (d_model // 2)] = torch.cos(position * frequencies)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        """x (B, L, d_model); `positions` (B, L) restart at 0 in each packed example; else
        positions `offset`, `offset` + 1, ... (decoding one token at a time)."""
        if positions is None:
            return x + self.table[offset : offset + x.shape[1]]
        return x + self.table[positions]


class MultiheadAttention(nn.Module):
    """Self-attention (one `in_proj` to queries, keys and values) or encoder-decoder attention
    (`q_proj` on the decoder, `kv_proj` on the encoder's output); no biases."""

    def __init__(self, d_model: int, num_heads: int, self_attention: bool, attention_temp: float, dropout: float):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads, self.attention_temp = num_heads, attention_temp
        if self_attention:
            self.in_proj = _linear(d_model, 3 * d_model, bias=False)
        else:
            self.q_proj = _linear(d_model, d_model, bias=False)
            self.kv_proj = _linear(d_model, 2 * d_model, bias=False)
        self.out_proj = _linear(d_model, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)  # on the attention weights

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                cache: Cache | None = None, name: str = "") -> torch.Tensor:
        """x (B, Lq, d) -> (B, Lq, d). `memory` (B, Lk, d): encoder-decoder attention.
        `cache`: decoding one position at a time; self-attention's keys and values so far are
        `cache[name + ".key"]`/`.value` (B, t, d), extended here; encoder-decoder attention
        computes the encoder's once, into `cache[name + ".memory_key"]`/`.memory_value`."""
        if memory is None:
            q, k, v = self.in_proj(x).chunk(3, dim=-1)
            if cache is not None:
                if name + ".key" in cache:
                    k, v = torch.cat([cache[name + ".key"], k], 1), torch.cat([cache[name + ".value"], v], 1)
                cache[name + ".key"], cache[name + ".value"] = k, v
        else:
            q = self.q_proj(x)
            if cache is not None and name + ".memory_key" in cache:
                k, v = cache[name + ".memory_key"], cache[name + ".memory_value"]
            else:
                k, v = self.kv_proj(memory).chunk(2, dim=-1)
                if cache is not None:
                    cache[name + ".memory_key"], cache[name + ".memory_value"] = k, v
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q * self.attention_temp, k, v))  # (B, H, L, d/H)
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout.p if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """linear1 -> activation (times `linear_glu` of the same input, for GLU) -> dropout -> linear2."""

    def __init__(self, d_model: int, d_hid: int, activation: str, glu: bool, dropout: float):
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        self.linear1 = _linear(d_model, d_hid)
        self.linear_glu = _linear(d_model, d_hid) if glu else None
        self.dropout = nn.Dropout(dropout)
        self.linear2 = _linear(d_hid, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.linear1(x))
        if self.linear_glu is not None:
            hidden = hidden * self.linear_glu(x)
        return self.linear2(self.dropout(hidden))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_hid: int, activation: str, glu: bool, pre_ln: bool,
                 attention_temp: float, eps: float, dropout: float):
        super().__init__()
        self.pre_ln = pre_ln
        self.self_attn = MultiheadAttention(d_model, num_heads, True, attention_temp, dropout)
        self.ff = FeedForward(d_model, d_hid, activation, glu, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)  # on each block's output, before the residual sum

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.dropout(self.self_attn(self.norm1(x), bias=bias))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, bias=bias)))
        return self.norm2(x + self.dropout(self.ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, d_hid: int, activation: str, glu: bool, pre_ln: bool,
                 attention_temp: float, eps: float, dropout: float):
        super().__init__()
        self.pre_ln = pre_ln
        self.self_attn = MultiheadAttention(d_model, num_heads, True, attention_temp, dropout)
        self.multihead_attn = MultiheadAttention(d_model, num_heads, False, attention_temp, dropout)
        self.ff = FeedForward(d_model, d_hid, activation, glu, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model, eps=eps) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_bias: torch.Tensor | None, memory_bias: torch.Tensor,
                cache: Cache | None = None, name: str = "") -> torch.Tensor:
        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.dropout(self.self_attn(h, bias=self_bias, cache=cache, name=name))

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            return self.dropout(self.multihead_attn(h, memory, bias=memory_bias, cache=cache, name=name))

        if self.pre_ln:
            x = x + self_attention(self.norm1(x))
            x = x + cross_attention(self.norm2(x))
            return x + self.dropout(self.ff(self.norm3(x)))
        x = self.norm1(x + self_attention(x))
        x = self.norm2(x + cross_attention(x))
        return self.norm3(x + self.dropout(self.ff(x)))


class Transformer(nn.Module):
    """Inputs (B, L) German token ids -> logits (B, L, vocab_size) over the next English token.

    Args mirror AlgoPerf's `Transformer`; `activation` is "relu" or "tanh".

    Raises:
        ValueError: an unknown activation, or d_model not divisible by num_heads.
    """

    def __init__(self, vocab_size: int = 32_000, d_model: int = 1024, num_heads: int = 16, d_hid: int = 1024,
                 num_layers: int = 6, activation: str = "relu", glu: bool = False, pre_ln: bool = True,
                 attention_temp: float = 1.0, layer_norm_eps: float = 1e-6, max_len: int = 256, dropout: float = 0.1):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (valid: {', '.join(ACTIVATIONS)})")
        layer_args = (d_model, num_heads, d_hid, activation, glu, pre_ln, attention_temp, layer_norm_eps, dropout)
        self.shared_embedding = nn.Embedding(vocab_size, d_model)  # torch's N(0, 1) init, as in AlgoPerf
        self.pos_encoder = SinusoidalPositions(d_model, max_len)
        self.dropout = nn.Dropout(dropout)  # on embeddings + positions
        self.encoder_layers = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(num_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(*layer_args) for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if pre_ln else None
        self.decoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if pre_ln else None

    def encode(self, inputs: torch.Tensor, positions: torch.Tensor | None = None, segments: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (B, Ls) -> memory (B, Ls, d_model)."""
        bias = attention_bias(inputs > 0, inputs > 0)
        if segments is not None:
            bias = bias + segment_bias(segments, segments)
        x = self.dropout(self.pos_encoder(self.shared_embedding(inputs), positions))
        for layer in self.encoder_layers:
            x = layer(x, bias)
        return x if self.encoder_norm is None else self.encoder_norm(x)

    def decode(self, targets: torch.Tensor, memory: torch.Tensor, inputs: torch.Tensor, positions: torch.Tensor | None = None,
               segments: torch.Tensor | None = None, input_segments: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: targets (B, Lt) -> logits (B, Lt, vocab) of each next token (the
        decoder reads the targets shifted right by one, a 0 first)."""
        self_bias = attention_bias(targets > 0, targets > 0, causal=True)
        memory_bias = attention_bias(targets > 0, inputs > 0)
        if segments is not None and input_segments is not None:
            self_bias = self_bias + segment_bias(segments, segments)
            memory_bias = memory_bias + segment_bias(segments, input_segments)
        shifted = F.pad(targets, (1, 0))[:, :-1]
        return self._decoder_stack(self.pos_encoder(self.shared_embedding(shifted), positions), memory, self_bias, memory_bias)

    def decode_step(self, token: torch.Tensor, memory: torch.Tensor, inputs: torch.Tensor, cache: Cache) -> torch.Tensor:
        """One autoregressive step: token (B,) at position `len` of the cache -> logits
        (B, vocab) of the next token; `cache` is extended in place."""
        step = cache["0.key"].shape[1] if "0.key" in cache else 0
        memory_bias = attention_bias(torch.ones_like(token[:, None], dtype=torch.bool), inputs > 0)
        x = self.pos_encoder(self.shared_embedding(token[:, None]), offset=step)
        return self._decoder_stack(x, memory, None, memory_bias, cache)[:, 0]

    def _decoder_stack(self, x: torch.Tensor, memory: torch.Tensor, self_bias: torch.Tensor | None, memory_bias: torch.Tensor,
                       cache: Cache | None = None) -> torch.Tensor:
        x = self.dropout(x)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, memory, self_bias, memory_bias, cache, name=str(i))
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return x @ self.shared_embedding.weight.T / math.sqrt(x.shape[-1])

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, inputs_position: torch.Tensor | None = None,
                inputs_segmentation: torch.Tensor | None = None, targets_position: torch.Tensor | None = None,
                targets_segmentation: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (B, Ls), targets (B, Lt) token ids (0: padding), with the positions and
        segment ids of packed examples -> logits (B, Lt, vocab_size)."""
        memory = self.encode(inputs, inputs_position, inputs_segmentation)
        return self.decode(targets, memory, inputs, targets_position, targets_segmentation, inputs_segmentation)


def reorder_cache(cache: Cache, order: torch.Tensor) -> None:
    """Make row i of the self-attention entries the old row `order[i]` (the beam it
    continues); the encoder's keys and values, the same for every beam of an example, stay."""
    for key, value in cache.items():
        if ".memory_" not in key:
            cache[key] = value[order]


def brevity_penalty(alpha: float, length: int) -> float:
    """The beam search's length normalisation ((5 + length) / 6) ** alpha (GNMT's)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(step_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int, beam_size: int = 4,
                alpha: float = 0.6, eos_id: int = EOS_ID, max_decode_len: int = 256, device: torch.device | str = "cpu") -> torch.Tensor:
    """AlgoPerf's (flax's) beam search. `step_fn(tokens (B*K,), order (B*K,))` first reorders
    its state (e.g. the decoder cache) by `order` (the beam each row continues, as a row
    index), then returns the log-probabilities or logits (B*K, vocab) of the token after
    `tokens`. Decoding starts from token 0 and stops at `max_decode_len` - 1 tokens or
    when no live beam can beat the worst finished one; a finished sequence scores its
    log-probability / `brevity_penalty(alpha, its length)`.

    Returns:
        (B, max_decode_len - 1) int64: each example's best sequence (its best live one if
        none finished); a finished one repeats `eos_id` to the end.
    """
    B, K = batch_size, beam_size
    rows = torch.arange(B, device=device)[:, None]
    live_logprobs = torch.full((B, K), NEG_INF, device=device)
    live_logprobs[:, 0] = 0.0  # all beams start as the same empty sequence: keep one
    live_seqs = torch.zeros((B, K, max_decode_len), dtype=torch.long, device=device)
    finished_scores = torch.full((B, K), NEG_INF, device=device)
    finished_seqs = torch.zeros_like(live_seqs)
    finished_flags = torch.zeros((B, K), dtype=torch.bool, device=device)
    order = torch.arange(B * K, device=device)
    for index in range(max_decode_len - 1):
        if _search_over(live_logprobs, finished_scores, finished_flags, alpha, max_decode_len):
            break
        log_probs = F.log_softmax(step_fn(live_seqs[:, :, index].flatten(), order).float(), dim=-1)
        vocab = log_probs.shape[-1]
        candidates = (log_probs.view(B, K, vocab) + live_logprobs[:, :, None]).view(B, K * vocab)
        top_logprobs, top_indices = candidates.topk(2 * K)  # 2K: even if K of them end here, K stay live
        top_beams = top_indices // vocab
        top_seqs = live_seqs[rows, top_beams]
        top_seqs[:, :, index + 1:] = (top_indices % vocab)[:, :, None]  # to the end, as AlgoPerf: a finished one repeats EOS
        ended = top_seqs[:, :, index + 1] == eos_id
        # live: the best K that did not end
        alive = (top_logprobs + ended * NEG_INF).topk(K).indices
        live_seqs, live_logprobs = top_seqs[rows, alive], (top_logprobs + ended * NEG_INF)[rows, alive]
        order = (rows * K + top_beams[rows, alive]).flatten()
        # finished: the best K of the old finished and the ones that ended here
        scores = top_logprobs / brevity_penalty(alpha, index + 1) + (~ended) * NEG_INF
        all_scores = torch.cat([finished_scores, scores], 1)
        best = all_scores.topk(K).indices
        finished_seqs = torch.cat([finished_seqs, top_seqs], 1)[rows, best]
        finished_flags = torch.cat([finished_flags, ended], 1)[rows, best]
        finished_scores = all_scores[rows, best]
    any_finished = finished_flags.any(1)
    best_finished = finished_seqs[:, 0]
    best_live = live_seqs[:, 0]
    return torch.where(any_finished[:, None], best_finished, best_live)[:, 1:]


def _search_over(live_logprobs: torch.Tensor, finished_scores: torch.Tensor, finished_flags: torch.Tensor, alpha: float,
                 max_decode_len: int) -> bool:
    """True when no live beam, even at the longest length's (most lenient) penalty, can beat
    the worst finished sequence of its example (AlgoPerf's stopping rule)."""
    best_live = live_logprobs[:, :1] / brevity_penalty(alpha, max_decode_len)
    worst_finished = finished_scores.min(1, keepdim=True).values
    worst_finished = torch.where(finished_flags, worst_finished, torch.full_like(worst_finished, NEG_INF))
    return bool((worst_finished > best_live).all())
