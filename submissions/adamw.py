"""AdamW with linear warmup and cosine decay, one of AlgoPerf's reference algorithms.

Paper: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).
Implementation: torch.optim.AdamW.
Hyperparameters: learning_rate, one_minus_beta1, beta2, weight_decay, warmup_factor,
label_smoothing, dropout_rate. Memory: two extra floats per parameter.
"""

from __future__ import annotations

import torch

from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Workload
from harness.plugins import submission_kit


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    optimizer = torch.optim.AdamW(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
        eps=1e-8,
        weight_decay=hyperparameters.weight_decay)
    return {"optimizer": optimizer, "scheduler": submission_kit.warmup_cosine(optimizer, hyperparameters, workload.step_hint)}


update_params = submission_kit.optimizer_update
data_selection = submission_kit.next_batch
