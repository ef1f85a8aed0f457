"""AdAdaGrad and AdAdaGradNorm: AdaGrad (coordinate-wise) or AdaGrad-Norm (one scalar step
size) whose batch size grows whenever an adaptive sampling test says the gradient estimate is
too noisy for the current batch.

Paper: Lau, Liu & Kolar, "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient
Methods" (arXiv:2402.11215, 2024), with the norm test (Byrd et al., 2012) and the augmented
inner-product test (Bollapragada et al., 2018). Written here: no maintained package has it.
The coordinate-wise variant steps with torch.optim.Adagrad.

Each step splits its batch of b examples into K equal micro-batches and takes their mean
gradients g_1..g_K (K backward passes: the step's whole cost stays inside the timed
`update_params`). With g = mean_j g_j, the per-example gradient variance is estimated from
the spread of the micro-batch means, Var ~ (b/K) sum_j ||g_j - g||^2 / (K - 1), and

* norm test: Var / b <= eta^2 ||g||^2;
* inner-product test: Var(<g_i, g>) / b <= eta^2 ||g||^4, and the orthogonality test
  Var(g_i - <g_i, g> g / ||g||^2) / b <= nu^2 ||g||^2 with nu = ORTHOGONALITY_NU.

When a test fails, the next batch is the smallest size that would pass it (rounded up to a
multiple of K), never smaller than the current one and at most max_batch_factor x the
workload's reference batch size. `data_selection` takes that many examples with
`input_queue.take(n)`; the runner counts every example it returns. (The paper estimates the
variance from per-example gradients; micro-batch means estimate the same quantity unbiasedly
and work for every model, BatchNorm included.)

Hyperparameters: learning_rate, variant (adagrad | adagrad_norm), batch_test (norm |
inner_product), eta, num_microbatches (K), max_batch_factor, label_smoothing, dropout_rate.
Memory: one extra float per parameter for AdAdaGrad (squared-gradient sum), one scalar for
AdAdaGradNorm, plus K gradient copies during a step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from harness.core.spec import (
    Batch,
    EvalResults,
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
from harness.plugins import submission_kit

INITIAL_BATCH_DIVISOR = 8
"""The first batch is the reference batch size divided by this (at least 2 K examples)."""
ORTHOGONALITY_NU = math.tan(math.radians(80))
"""Bollapragada et al.'s choice: the orthogonality test only binds for very noisy directions."""


class AdaGradNorm(torch.optim.Optimizer):
    """AdaGrad-Norm (Ward, Wu & Bottou, 2019): every parameter steps by lr / sqrt(sum over
    steps of ||g||^2), the norm taken over all parameters. Single parameter group."""

    def __init__(self, params, lr: float, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = torch.enable_grad()(closure)() if closure is not None else None
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]
        state = self.state[group["params"][0]]
        if "sum_sq" not in state:
            state["sum_sq"] = torch.zeros((), dtype=torch.float64, device=group["params"][0].device)
        state["sum_sq"] += sum(p.grad.double().square().sum() for p in params)
        step_size = group["lr"] / (state["sum_sq"].sqrt().item() + group["eps"])
        for p in params:
            p.add_(p.grad, alpha=-step_size)
        return loss


def norm_test_batch_size(micro_grads: Tensor, batch_size: int, eta: float) -> float:
    """Smallest batch size that passes the norm test, from K micro-batch mean gradients (K x d)."""
    mean = micro_grads.mean(0)
    k = len(micro_grads)
    variance = (batch_size / k) * (micro_grads - mean).square().sum() / (k - 1)
    return float(variance / (eta ** 2 * mean.square().sum().clamp_min(1e-30)))


def inner_product_test_batch_size(micro_grads: Tensor, batch_size: int, eta: float, nu: float = ORTHOGONALITY_NU) -> float:
    """Smallest batch size that passes the augmented inner-product test (inner product and
    orthogonality), from K micro-batch mean gradients (K x d)."""
    mean = micro_grads.mean(0)
    k = len(micro_grads)
    norm_sq = mean.square().sum().clamp_min(1e-30)
    inner = micro_grads @ mean  # K; their mean is ||g||^2
    inner_variance = (batch_size / k) * (inner - norm_sq).square().sum() / (k - 1)
    orthogonal = micro_grads - (inner / norm_sq).unsqueeze(1) * mean  # their mean is 0
    orthogonal_variance = (batch_size / k) * orthogonal.square().sum() / (k - 1)
    return max(float(inner_variance / (eta ** 2 * norm_sq ** 2)), float(orthogonal_variance / (nu ** 2 * norm_sq)))


BATCH_TESTS = {"norm": norm_test_batch_size, "inner_product": inner_product_test_batch_size}


def get_batch_size(workload_name: str) -> int:
    return max(16, submission_kit.reference_batch_size(workload_name) // INITIAL_BATCH_DIVISOR)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    if hyperparameters.variant == "adagrad":
        optimizer = torch.optim.Adagrad(model_params.parameters(), lr=hyperparameters.learning_rate, eps=1e-10)
    else:
        optimizer = AdaGradNorm(model_params.parameters(), lr=hyperparameters.learning_rate)
    reference = submission_kit.reference_batch_size(getattr(workload, "base_name", workload.name))
    k = int(hyperparameters.num_microbatches)
    return {
        "optimizer": optimizer,
        "batch_size": _round_up(get_batch_size(getattr(workload, "base_name", workload.name)), k),
        "max_batch_size": _round_up(int(hyperparameters.max_batch_factor * reference), k),
    }


def data_selection(
    workload: Workload,
    input_queue: InputQueue,
    optimizer_state: OptimizerState,
    current_param_container: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    global_step: int,
    rng: Rng,
) -> Batch:
    return input_queue.take(int(optimizer_state["batch_size"]))


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
    params = [p for p in current_param_container.parameters() if p.requires_grad]
    batch_size = len(batch["inputs"])
    micro_grads, model_state = _microbatch_gradients(workload, current_param_container, params, model_state, hyperparameters, batch, rng)
    required = BATCH_TESTS[str(hyperparameters.batch_test)](micro_grads, batch_size, float(hyperparameters.eta))
    if required > batch_size:
        k = int(hyperparameters.num_microbatches)
        optimizer_state["batch_size"] = min(max(_round_up(math.ceil(required), k), batch_size), int(optimizer_state["max_batch_size"]))
    _set_gradients(params, micro_grads.mean(0))
    optimizer_state["optimizer"].step()
    return optimizer_state, current_param_container, model_state


def _microbatch_gradients(workload: Workload, model: ParameterContainer, params: list[torch.Tensor], model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, batch: Batch, rng: Rng) -> tuple[Tensor, ModelAuxiliaryState]:
    """Mean gradient of each of K equal slices of the batch, flattened: K x d."""
    k = min(int(hyperparameters.num_microbatches), len(batch["inputs"]))
    slices = [dict(zip(batch, parts, strict=True)) for parts in zip(*(v.tensor_split(k) for v in batch.values()), strict=True)]
    rows = []
    for micro in slices:
        for p in params:
            p.grad = None
        _, model_state = submission_kit.forward_backward(workload, model, model_state, hyperparameters, micro, rng)
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]))
    return torch.stack(rows), model_state


def _set_gradients(params: list[torch.Tensor], flat: Tensor) -> None:
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
