"""SGD with Nesterov momentum, linear warmup and linear decay: one of AlgoPerf's reference
algorithms. Everything but the momentum kind is shared with `momentum.py`.

Paper: Nesterov (1983); Sutskever et al., "On the importance of initialization and momentum
in deep learning" (ICML 2013). Implementation: torch.optim.SGD(nesterov=True).
Hyperparameters: as `momentum.py`. Memory: one extra float per parameter.
"""

from __future__ import annotations

from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Workload
from submissions.momentum import data_selection, get_batch_size, sgd_optimizer_state, update_params

__all__ = ["data_selection", "get_batch_size", "init_optimizer_state", "update_params"]


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    return sgd_optimizer_state(workload, model_params, hyperparameters, nesterov=True)
