"""SGD with heavy-ball momentum, linear warmup and linear decay: one of AlgoPerf's reference
algorithms (`sgd_nesterov.py` is the same with Nesterov momentum).

Paper: Polyak, "Some methods of speeding up the convergence of iteration methods" (1964).
Implementation: torch.optim.SGD (weight decay is the coupled L2 penalty, as in AlgoPerf).
Hyperparameters: learning_rate, one_minus_beta1 (momentum = 1 - it), weight_decay,
warmup_factor, decay_steps_factor (decay ends at this fraction of step_hint), end_factor
(final fraction of the learning rate), label_smoothing, dropout_rate.
Memory: one extra float per parameter.
"""

from __future__ import annotations

import torch

from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Workload
from harness.plugins import submission_kit


def sgd_optimizer_state(workload: Workload, model_params: ParameterContainer, hyperparameters: Hyperparameters, *, nesterov: bool) -> OptimizerState:
    optimizer = torch.optim.SGD(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        momentum=1.0 - hyperparameters.one_minus_beta1,
        weight_decay=hyperparameters.weight_decay,
        nesterov=nesterov)
    return {"optimizer": optimizer, "scheduler": submission_kit.warmup_linear_decay(optimizer, hyperparameters, workload.step_hint)}


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    return sgd_optimizer_state(workload, model_params, hyperparameters, nesterov=False)


update_params = submission_kit.optimizer_update
data_selection = submission_kit.next_batch
