"""AdaHessian: Adam whose second moment is a running average of the squared Hessian diagonal,
estimated by Hutchinson's method (E[z * (H z)] for Rademacher z) at every step.

Paper: Yao et al., "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning"
(AAAI 2021). Implementation: pytorch_optimizer.AdaHessian (pinned in pyproject.toml); it
draws z and computes H z by a second backward pass through the gradient's graph, which is why
this submission controls the step: the first backward needs `create_graph=True`, and the
graph is dropped after the update. (The library does not average the estimate spatially over
convolution kernels as the paper does.)

Hyperparameters: learning_rate, one_minus_beta1, beta2, weight_decay (decoupled),
hessian_power, warmup_factor, label_smoothing, dropout_rate.
Memory: three extra floats per parameter (first moment, squared-Hessian average, the current
Hessian estimate), plus the double-backward graph during a step (about one more activation
set and one more gradient).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import pytorch_optimizer

from harness.core.spec import (
    Batch,
    EvalResults,
    Hyperparameters,
    LossType,
    ModelAuxiliaryState,
    OptimizerState,
    ParameterContainer,
    ParameterType,
    Rng,
    Workload,
)
from harness.plugins import submission_kit


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    optimizer = pytorch_optimizer.AdaHessian(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
        weight_decay=hyperparameters.weight_decay,
        weight_decouple=True,
        hessian_power=hyperparameters.hessian_power,
        hessian_distribution="rademacher")
    return {"optimizer": optimizer, "scheduler": submission_kit.warmup_cosine(optimizer, hyperparameters, workload.step_hint)}


def update_params(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: dict[str, ParameterType],
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    batch: Batch,
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, EvalResults]],
    global_step: int,
    rng: Rng,
    train_state: Mapping[str, object] | None = None,
) -> tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]:
    optimizer = optimizer_state["optimizer"]
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        # torch warns that create_graph=True ties each parameter and its gradient in a cycle; the
        # zero_grad(set_to_none=True) after the step breaks it, so the warning is noise here.
        warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True", category=UserWarning)
        _, new_model_state = submission_kit.forward_backward(workload, current_param_container, model_state, hyperparameters, batch, rng, create_graph=True)
    optimizer.step()  # Hutchinson: differentiates the gradients, which carry their graph
    optimizer.zero_grad(set_to_none=True)  # release the graph before the next step
    optimizer_state["scheduler"].step()
    return optimizer_state, current_param_container, new_model_state


data_selection = submission_kit.next_batch
