"""Schedule-Free AdamW: no learning-rate decay; the weights evaluated are an average of the
iterates, and the gradient is taken at an interpolation between that average and the iterate.

Paper: Defazio et al., "The Road Less Scheduled" (NeurIPS 2024); the AlgoPerf v0.5 winner of
the self-tuning ruleset. Implementation: the reference `schedulefree` package
(AdamWScheduleFree, pinned in pyproject.toml), which keeps the gradient point y in the model
while training and swaps in the average x with `optimizer.eval()`.

This submission controls the step because of that swap: `prepare_for_eval` (timed) switches
the model to x and, when the model has BatchNorm, recomputes its running statistics at x
from the last few training batches (statistics gathered at y do not fit x); the next
`update_params` switches back to y before stepping.

Hyperparameters: learning_rate, one_minus_beta1 (the interpolation beta), beta2,
weight_decay, warmup_factor (warmup steps = it x step_hint), label_smoothing, dropout_rate.
Memory: two extra floats per parameter (z and the second moment; x is recovered from y and
z), plus up to RECALIBRATION_BATCHES training batches kept for models with BatchNorm.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import schedulefree

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

RECALIBRATION_BATCHES = 8


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    optimizer = schedulefree.AdamWScheduleFree(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
        weight_decay=hyperparameters.weight_decay,
        warmup_steps=int(hyperparameters.warmup_factor * workload.step_hint))
    optimizer.train()
    recent = deque(maxlen=RECALIBRATION_BATCHES if submission_kit.has_batch_norm(model_params) else 0)
    return {"optimizer": optimizer, "recent_batches": recent}


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
    optimizer_state["optimizer"].train()  # back to y if the last call was prepare_for_eval; no-op otherwise
    optimizer_state["recent_batches"].append(batch)
    return submission_kit.optimizer_update(
        workload, current_param_container, current_params_types, model_state, hyperparameters, batch,
        loss_type, optimizer_state, eval_results, global_step, rng, train_state)


def prepare_for_eval(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: dict[str, ParameterType],
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, EvalResults]],
    global_step: int,
    rng: Rng,
) -> tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]:
    optimizer_state["optimizer"].eval()  # the model now holds the average x
    if optimizer_state["recent_batches"]:
        model_state = submission_kit.recalibrate_batch_norm(workload, current_param_container, model_state, list(optimizer_state["recent_batches"]), rng)
    return optimizer_state, current_param_container, model_state


data_selection = submission_kit.next_batch
