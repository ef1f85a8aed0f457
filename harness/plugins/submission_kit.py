"""Pieces shared by Pacer's own submissions: the loss-and-backward step, learning-rate
schedules, the default data selection and reference batch sizes.

AlgoPerf submissions don't need this module; Pacer's do, so that each submission file holds
only what makes its algorithm different."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness.core.runner import running_batch_size
from harness.core.spec import (
    Batch,
    EvalResults,
    ForwardPassMode,
    Hyperparameters,
    InputQueue,
    LossType,
    ModelAuxiliaryState,
    OptimizerState,
    ParameterContainer,
    ParameterType,
    Rng,
    Tensor,
    Workload,
)
from harness.plugins.workloads import workload_config

HARNESS_HYPERPARAMETERS = ("warmup_factor", "decay_steps_factor", "end_factor", "label_smoothing", "dropout_rate", "grad_clip")
"""Hyperparameters this module reads itself (schedules, loss, model, clipping), as opposed to
the ones a submission passes to its optimizer."""


def reference_batch_size(workload_name: str) -> int:
    """The batch size the workload's targets were set with: the running workload's `batch_size`
    (overrides included), else its config's."""
    running = running_batch_size(workload_name)
    return running if running is not None else int(workload_config(workload_name)["batch_size"])


def forward_backward(workload: Workload, model: torch.nn.Module, model_state: ModelAuxiliaryState, hparams: Mapping[str, object], batch: Batch, rng: Rng, *, create_graph: bool = False) -> tuple[Tensor, ModelAuxiliaryState]:
    """Mean training loss of the batch after `backward()`; gradients accumulate in `.grad`.
    With `create_graph=True` (Hessian-vector products) attention runs on the math kernel: the
    fused flash and memory-efficient kernels have no double backward."""
    with sdpa_kernel(SDPBackend.MATH) if create_graph else contextlib.nullcontext():
        logits, new_model_state = workload.model_fn(
            model, batch, model_state, ForwardPassMode.TRAIN, rng, update_batch_norm=True,
            dropout_rate=hparams.get("dropout_rate"))
    loss = workload.loss_fn(batch["targets"], logits, batch.get("weights"), float(hparams.get("label_smoothing", 0.0)))
    mean_loss = loss["summed"] / loss["n_valid_examples"]
    mean_loss.backward(create_graph=create_graph)
    return mean_loss.detach(), new_model_state


def next_batch(
    workload: Workload,
    input_queue: InputQueue,
    optimizer_state: OptimizerState,
    current_param_container: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    global_step: int,
    rng: Rng,
) -> Batch:
    """`data_selection` of every submission that takes the stream as it comes."""
    return next(input_queue)


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batch_norm(workload: Workload, model: torch.nn.Module, model_state: ModelAuxiliaryState, batches: list[Batch], rng: Rng) -> ModelAuxiliaryState:
    """Recompute BatchNorm running statistics as the plain average over `batches` at the
    current weights (for submissions that evaluate other weights than they train, e.g.
    averaged ones). Parameters do not change."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    for batch in batches:
        _, model_state = workload.model_fn(model, batch, model_state, ForwardPassMode.TRAIN, rng, update_batch_norm=True)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    return model_state


def clip_gradients(model: torch.nn.Module, hparams: Mapping[str, object]) -> None:
    if hparams.get("grad_clip") is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=float(hparams["grad_clip"]))


class WarmupCosine:
    """Linear warmup from 0 over `warmup` steps, then cosine decay to 0 at `total` steps
    (AlgoPerf's baseline schedule). A callable class so that schedulers pickle."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = max(warmup, 1), max(total, warmup + 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / (self.total - self.warmup), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupLinearDecay:
    """Linear warmup over `warmup` steps, then linear decay to `end_factor` at `decay_end`
    steps, constant afterwards (AlgoPerf's momentum baselines' polynomial schedule, power 1)."""

    def __init__(self, warmup: int, decay_end: int, end_factor: float):
        self.warmup, self.decay_end, self.end_factor = max(warmup, 1), max(decay_end, warmup + 1), end_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min((step - self.warmup) / (self.decay_end - self.warmup), 1.0)
        return 1.0 - (1.0 - self.end_factor) * progress


def warmup_cosine(optimizer: torch.optim.Optimizer, hparams: Hyperparameters, step_hint: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(float(hparams.get("warmup_factor", 0.05)) * step_hint)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, step_hint))


def warmup_linear_decay(optimizer: torch.optim.Optimizer, hparams: Hyperparameters, step_hint: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(float(hparams.get("warmup_factor", 0.05)) * step_hint)
    decay_end = int(float(hparams.get("decay_steps_factor", 1.0)) * step_hint)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupLinearDecay(warmup, decay_end, float(hparams.get("end_factor", 0.0))))


def constant(optimizer: torch.optim.Optimizer, hparams: Hyperparameters, step_hint: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate as given, at every step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, Constant())


class Constant:
    """Factor 1 at every step (a class, not a lambda, so that schedulers pickle)."""

    def __call__(self, step: int) -> float:
        return 1.0


SCHEDULES = {"constant": constant, "warmup_cosine": warmup_cosine, "warmup_linear": warmup_linear_decay}
"""Learning-rate schedules by the name a config-only submission's `schedule:` uses."""


def optimizer_update(
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
    """`update_params` of a submission made of `optimizer_state["optimizer"]` (a torch
    optimizer) and, optionally, `optimizer_state["scheduler"]` (an LR scheduler; absent for
    optimizers that schedule themselves)."""
    optimizer = optimizer_state["optimizer"]
    optimizer.zero_grad(set_to_none=True)
    _, new_model_state = forward_backward(workload, current_param_container, model_state, hyperparameters, batch, rng)
    clip_gradients(current_param_container, hyperparameters)
    optimizer.step()
    if "scheduler" in optimizer_state:
        optimizer_state["scheduler"].step()
    return optimizer_state, current_param_container, new_model_state
