"""NAdamW with linear warmup and cosine decay: AlgoPerf's baseline recipe.

Paper: Dozat, "Incorporating Nesterov Momentum into Adam" (ICLR 2016 workshop), with
decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019);
the recipe is AlgoPerf's `reference_algorithms/.../nadamw`. torch.optim.NAdam is a different
algorithm (it adds a momentum-decay schedule), so the update is written here.

Hyperparameters: learning_rate, one_minus_beta1, beta2, weight_decay, warmup_factor
(fraction of step_hint spent warming up), label_smoothing, dropout_rate.
Memory: two extra floats per parameter (first and second moments).
"""

from __future__ import annotations

import math

import torch

from harness.core.spec import Hyperparameters, ModelAuxiliaryState, OptimizerState, ParameterContainer, Rng, Workload
from harness.plugins import submission_kit


class NAdamW(torch.optim.Optimizer):
    """Adam whose update uses the Nesterov look-ahead of the first moment,
    beta1 * m_t + (1 - beta1) * g_t, with decoupled weight decay."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = torch.enable_grad()(closure)() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                nesterov = exp_avg.mul(beta1).add_(grad, alpha=1 - beta1)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** state["step"])).add_(group["eps"])
                p.addcdiv_(nesterov, denom, value=-group["lr"] / (1 - beta1 ** state["step"]))
        return loss


def get_batch_size(workload_name: str) -> int:
    return submission_kit.reference_batch_size(workload_name)


def init_optimizer_state(workload: Workload, model_params: ParameterContainer, model_state: ModelAuxiliaryState, hyperparameters: Hyperparameters, rng: Rng) -> OptimizerState:
    optimizer = NAdamW(
        model_params.parameters(),
        lr=hyperparameters.learning_rate,
        betas=(1.0 - hyperparameters.one_minus_beta1, hyperparameters.beta2),
        weight_decay=hyperparameters.weight_decay)
    return {"optimizer": optimizer, "scheduler": submission_kit.warmup_cosine(optimizer, hyperparameters, workload.step_hint)}


update_params = submission_kit.optimizer_update
data_selection = submission_kit.next_batch
