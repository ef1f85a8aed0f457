"""AlgoPerf's DeepSpeech-style speech model with a CTC head
(algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py).

Raw audio -> log-mel features -> SpecAugment (training only) -> two stride-2 convolutions and
a linear -> bidirectional LSTM layers -> feed-forward layers (both residual unless
`residual=False`) -> layer norm -> per-frame logits, blank = 0. Normalization before each LSTM
and feed-forward layer is a masked batch norm synced over DDP ranks, or a LayerNorm with
`layernorm_everywhere`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workloads.data.librispeech import LogMelFrontend, SpecAugment
from workloads.models.conformer import LayerNorm, MaskedBatchNorm, Subsample, init_weights


class Normalization(nn.Module):
    """A masked batch norm (synced under DDP) or, with `layernorm`, a LayerNorm."""

    def __init__(self, dim: int, layernorm: bool):
        super().__init__()
        self.norm = LayerNorm(dim) if layernorm else MaskedBatchNorm(dim, sync=True)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if isinstance(self.norm, LayerNorm) else self.norm(x, paddings)


class BatchRNN(nn.Module):
    """Normalization -> bidirectional LSTM (dim/2 per direction) over each utterance's
    unpadded frames; padded frames come out 0."""

    def __init__(self, dim: int, layernorm: bool):
        super().__init__()
        self.norm = Normalization(dim, layernorm)
        self.lstm = nn.LSTM(dim, dim // 2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        lengths = (1 - paddings).sum(dim=1).long().cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.norm(x, paddings), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class FeedForward(nn.Module):
    """Normalization -> Linear(D, D) -> activation, padded frames 0 -> dropout."""

    def __init__(self, dim: int, layernorm: bool, activation: str, dropout: float):
        super().__init__()
        self.norm = Normalization(dim, layernorm)
        self.lin = nn.Linear(dim, dim)
        self.activation = torch.tanh if activation == "tanh" else F.relu
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.lin(self.norm(x, paddings))) * (1 - paddings)[:, :, None])


class DeepSpeech(nn.Module):
    """AlgoPerf's `DeepspeechEncoderDecoder`. Defaults are AlgoPerf's full size (18,393,600
    parameters). Variants: `activation="tanh"` (tanh), `residual=False` (no_resnet),
    `layernorm_everywhere=True, decoder_layer_norm=False` with 4 frequency and 15 time masks
    (norm_and_spec_aug)."""

    def __init__(self, vocab_size: int = 1024, encoder_dim: int = 512, num_lstm_layers: int = 6, num_ffn_layers: int = 3,
                 activation: str = "relu", residual: bool = True, layernorm_everywhere: bool = False, decoder_layer_norm: bool = True,
                 use_specaug: bool = True, freq_mask_count: int = 2, time_mask_count: int = 10, dropout: float = 0.1):
        super().__init__()
        self.use_specaug, self.residual = use_specaug, residual
        self.preprocessor = LogMelFrontend()
        self.specaug = SpecAugment(freq_mask_count, time_mask_count)
        self.subsample = Subsample(encoder_dim, activation, positional=False, dropout=dropout)
        self.lstms = nn.ModuleList([BatchRNN(encoder_dim, layernorm_everywhere) for _ in range(num_lstm_layers)])
        self.ffns = nn.ModuleList([FeedForward(encoder_dim, layernorm_everywhere, activation, dropout) for _ in range(num_ffn_layers)])
        self.ln = LayerNorm(encoder_dim) if decoder_layer_norm else nn.Identity()
        self.lin = nn.Linear(encoder_dim, vocab_size)
        init_weights(self)  # LSTMs keep PyTorch's default init, as AlgoPerf's do

    def forward(self, audio: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) samples and paddings -> (B, T', vocab) logits and (B, T') paddings,
        T' = ceil(ceil(F / 2) / 2) of the F = (T - 401) // 160 + 1 feature frames."""
        x, paddings = self.preprocessor(audio, paddings)
        if self.training and self.use_specaug:
            x = self.specaug(x, paddings)
        x, paddings = self.subsample(x, paddings)
        for layer in [*self.lstms, *self.ffns]:
            x = x + layer(x, paddings) if self.residual else layer(x, paddings)
        return self.lin(self.ln(x)), paddings
