"""Speech recognition on LibriSpeech by a DeepSpeech-style model (convolutions,
bidirectional LSTMs, feed-forward layers) with a CTC head: AlgoPerf's
`librispeech_deepspeech` workload (algoperf/workloads/librispeech_deepspeech/).

Data, loss and metric are the Conformer workload's (workloads/librispeech_common.py); the
model is workloads/models/deepspeech.py. Targets, budget, eval period and step hint per
AlgoPerf version, and the variants (tanh, no residual connections, LayerNorm everywhere with
more SpecAugment masks), are in configs/workload/librispeech_deepspeech.yaml;
docs/workloads/librispeech.md lists the differences from AlgoPerf.
"""

from __future__ import annotations

from torch import nn

from harness.core.checks import check_choice, flag, whole_number
from workloads.librispeech_common import LibriSpeechWorkload
from workloads.models.deepspeech import DeepSpeech

ACTIVATIONS = ("relu", "tanh")


class LibriSpeechDeepSpeech(LibriSpeechWorkload):
    """Keyword arguments are the config's keys: the model's `num_lstm_layers`,
    `num_ffn_layers`, `activation` (relu | tanh), `residual`, `layernorm_everywhere`,
    `decoder_layer_norm`, and those of `LibriSpeechWorkload`."""

    def __init__(self, *, num_lstm_layers: int = 6, num_ffn_layers: int = 3, activation: str = "relu", residual: bool = True,
                 layernorm_everywhere: bool = False, decoder_layer_norm: bool = True, **common):
        self.num_lstm_layers, self.num_ffn_layers = whole_number("num_lstm_layers", num_lstm_layers), whole_number("num_ffn_layers", num_ffn_layers, minimum=0)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.residual, self.layernorm_everywhere = flag("residual", residual), flag("layernorm_everywhere", layernorm_everywhere)
        self.decoder_layer_norm = flag("decoder_layer_norm", decoder_layer_norm)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        return DeepSpeech(vocab_size=self.vocab_size, encoder_dim=self.encoder_dim, num_lstm_layers=self.num_lstm_layers,
                          num_ffn_layers=self.num_ffn_layers, activation=self.activation, residual=self.residual,
                          layernorm_everywhere=self.layernorm_everywhere, decoder_layer_norm=self.decoder_layer_norm,
                          use_specaug=self.use_specaug, freq_mask_count=self.freq_mask_count, time_mask_count=self.time_mask_count,
                          dropout=self.dropout_rate)
