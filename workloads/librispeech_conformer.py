"""Speech recognition on LibriSpeech by a Conformer with a CTC head: AlgoPerf's
`librispeech_conformer` workload (algoperf/workloads/librispeech_conformer/).

Data: AlgoPerf's preprocessed LibriSpeech (`workloads.data.librispeech.LAYOUT`): raw 16 kHz
audio per utterance and its SentencePiece ids (1024 pieces). The model computes log-mel
features and SpecAugment itself (workloads/models/conformer.py). Loss: CTC; metric: word
error rate of greedy CTC decoding (workloads/librispeech_common.py). Targets, budget, eval
period and step hint per AlgoPerf version, and the variants (attention temperature, no
post-LayerNorm, GELU), are in configs/workload/librispeech_conformer.yaml;
docs/workloads/librispeech.md lists the differences from AlgoPerf.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.core import distributed
from harness.core.checks import check_choice, finite_number, flag, whole_number
from harness.core.spec import EvalResults, ModelAuxiliaryState, ParameterContainer, Rng
from workloads.librispeech_common import LibriSpeechWorkload
from workloads.models.conformer import ACTIVATIONS, Conformer, MaskedBatchNorm


class LibriSpeechConformer(LibriSpeechWorkload):
    """Keyword arguments are the config's keys: the Conformer's `num_heads`, `num_layers`,
    `activation` (swish | gelu), `attention_temperature`, `post_layer_norm`, and those of
    `LibriSpeechWorkload`."""

    def __init__(self, *, encoder_dim: int = 512, num_heads: int = 8, num_layers: int = 4, activation: str = "swish",
                 attention_temperature: float = 1.0, post_layer_norm: bool = True, **common):
        self.num_heads, self.num_layers = whole_number("num_heads", num_heads), whole_number("num_layers", num_layers)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self.attention_temperature = finite_number("attention_temperature", attention_temperature, 0.0, exclusive=True)
        self.post_layer_norm = flag("post_layer_norm", post_layer_norm)
        if whole_number("encoder_dim", encoder_dim) % self.num_heads:
            raise ValueError(f"encoder_dim={encoder_dim} is not divisible by num_heads={num_heads}")
        super().__init__(encoder_dim=encoder_dim, **common)

    def build_model(self) -> nn.Module:
        return Conformer(vocab_size=self.vocab_size, encoder_dim=self.encoder_dim, num_heads=self.num_heads, num_layers=self.num_layers,
                         activation=self.activation, attention_temperature=self.attention_temperature, post_layer_norm=self.post_layer_norm,
                         use_specaug=self.use_specaug, freq_mask_count=self.freq_mask_count, time_mask_count=self.time_mask_count,
                         dropout=self.dropout_rate)

    def eval_model(self, global_batch_size: int, params: ParameterContainer, model_state: ModelAuxiliaryState, rng: Rng,
                   global_step: int) -> EvalResults:
        """Under DDP, first averages the batch-norm running statistics over the ranks (each
        rank's come from its own batches), as AlgoPerf's `sync_sd` does before evaluating."""
        if distributed.active():
            model = params.module if isinstance(params, DistributedDataParallel) else params
            with torch.no_grad():
                for norm in (m for m in model.modules() if isinstance(m, MaskedBatchNorm)):
                    for statistic in (norm.running_mean, norm.running_var):
                        distributed.all_reduce(statistic).div_(distributed.world_size())
        return super().eval_model(global_batch_size, params, model_state, rng, global_step)
