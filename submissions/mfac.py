"""M-FAC: SGD with momentum preconditioned by a matrix-free inverse of the empirical Fisher of
a sliding window of the last m gradients.

Paper: Frantar, Kurtic & Alistarh, "M-FAC: Efficient Matrix-Free Approximations of
Second-Order Information" (NeurIPS 2021), the "dynamic" algorithm and its optimizer. Written
here: no maintained package provides it.

With the window's gradients as the rows of G (k x d, k = min(steps, m)) and damping lambda,

    F = lambda I + (1/k) G^T G,      F^-1 x = (1/lambda) (x - G^T (k lambda I + G G^T)^-1 G x)

(Woodbury). The Gram matrix G G^T is updated by one row and column per step (O(dm)), its
Cholesky factor recomputed (O(m^3), m << d), and each inverse-Fisher-vector product costs
O(dm + m^2): two products with G and one triangular solve pair. The step uses
lambda F^-1 g, which equals g outside the window's span, so that the learning rate keeps
SGD's scale; momentum and decoupled weight decay follow as in the paper's optimizer.

Hyperparameters: learning_rate, one_minus_beta1 (momentum = 1 - it), weight_decay,
damping (lambda), num_gradients (m), warmup_factor, label_smoothing, dropout_rate.
Memory: m + 1 extra floats per parameter (the window and the momentum buffer) plus an m x m
Gram matrix and its factor in float64; it does not grow with the number of steps.
"""

from __future__ import annotations

import torch

from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Tensor, Workload
from harness.plugins import submission_kit


class GradientWindow:
    """The last m gradients of a d-dimensional model and the inverse of lambda I + their Fisher.

    A view over tensors kept in a plain dict (`new_state`), so that they live in the
    optimizer's `state` and are checkpointed with it."""

    def __init__(self, state: dict[str, object], damping: float):
        self.state, self.damping = state, damping

    @staticmethod
    def new_state(dim: int, num_gradients: int, dtype: torch.dtype, device: torch.device) -> dict[str, object]:
        return {
            "grads": torch.zeros(num_gradients, dim, dtype=dtype, device=device),  # G: row i = one gradient
            "gram": torch.zeros(num_gradients, num_gradients, dtype=torch.float64, device=device),  # G G^T
            "count": 0,
            "next_slot": 0,
        }

    def add(self, grad: Tensor) -> None:
        """Replace the oldest gradient by `grad` and refactor (O(dm + m^3))."""
        grads, gram, slot = self.state["grads"], self.state["gram"], int(self.state["next_slot"])
        grads[slot] = grad
        row = (grads @ grad).double()
        gram[slot, :], gram[:, slot] = row, row
        k = min(int(self.state["count"]) + 1, len(grads))
        self.state["next_slot"], self.state["count"] = (slot + 1) % len(grads), k
        system = gram[:k, :k] + k * self.damping * torch.eye(k, dtype=torch.float64, device=grad.device)
        self.state["cholesky"] = torch.linalg.cholesky(system)

    def inverse_fisher_product(self, x: Tensor) -> Tensor:
        """F^-1 x for F = lambda I + (1/k) sum of g g^T over the window (O(dm + m^2))."""
        if "cholesky" not in self.state:
            return x / self.damping
        window = self.state["grads"][:int(self.state["count"])]
        coefficients = torch.cholesky_solve((window @ x).double().unsqueeze(1), self.state["cholesky"]).squeeze(1)
        return (x - window.T @ coefficients.to(x.dtype)) / self.damping


class MFAC(torch.optim.Optimizer):
    """M-FAC over all parameters at once (one global window), with momentum and decoupled
    weight decay. One parameter group; its state lives with the group's first parameter."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, damping: float = 1e-4, num_gradients: int = 32):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "damping": damping, "num_gradients": num_gradients})
        if len(self.param_groups) != 1:
            raise ValueError("MFAC takes a single parameter group")

    def _window_state(self) -> dict[str, object]:
        group = self.param_groups[0]
        params = group["params"]
        state = self.state[params[0]]
        if not state:
            dim = sum(p.numel() for p in params)
            state.update(GradientWindow.new_state(dim, group["num_gradients"], params[0].dtype, params[0].device))
            state["momentum_buffer"] = torch.zeros(dim, dtype=params[0].dtype, device=params[0].device)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = torch.enable_grad()(closure)() if closure is not None else None
        group = self.param_groups[0]
        params, state = group["params"], self._window_state()
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        window = GradientWindow(state, group["damping"])
        window.add(grad)
        direction = window.inverse_fisher_product(grad) * group["damping"]
        buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(direction)
        offset = 0
        for p in params:
            n = p.numel()
            p.mul_(1.0 - group["lr"] * group["weight_decay"])
            p.add_(buffer[offset:offset + n].view_as(p), alpha=-group["lr"])
            offset += n
        return loss


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    optimizer = MFAC(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        momentum=1.0 - hyperparameters.one_minus_beta1,
        weight_decay=hyperparameters.weight_decay,
        damping=hyperparameters.damping,
        num_gradients=int(hyperparameters.num_gradients))
    return {"optimizer": optimizer, "scheduler": submission_kit.warmup_cosine(optimizer, hyperparameters, workload.step_hint)}


update_params = submission_kit.optimizer_update
data_selection = submission_kit.next_batch
