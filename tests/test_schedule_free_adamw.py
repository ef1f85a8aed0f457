"""Schedule-Free AdamW: eval sees the averaged weights (with BatchNorm statistics recomputed
for them) and training resumes from the gradient-point weights."""

from __future__ import annotations

import torch
from torch import nn

from harness.core.spec import ForwardPassMode, Hyperparameters
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload
from submissions import schedule_free_adamw as sf

HPARAMS = Hyperparameters({"learning_rate": 0.01, "one_minus_beta1": 0.1, "beta2": 0.999, "weight_decay": 0.01,
                           "warmup_factor": 0.05, "label_smoothing": 0.0, "dropout_rate": 0.0})


class TinyBatchNormNet(TensorWorkload):
    """Random 8-feature, 3-class data through Linear -> BatchNorm -> ReLU -> Linear."""

    def make_splits(self, dataset_seed: int) -> Splits:
        generator = torch.Generator().manual_seed(dataset_seed)
        x = torch.randn(600, 8, generator=generator) * 3 + 1
        y = torch.randint(0, 3, (600,), generator=generator)
        return Splits(Split(x[:400], y[:400]), Split(x[400:500], y[400:500]), Split(x[500:], y[500:]), eval_train_size=100)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def tiny_workload() -> TinyBatchNormNet:
    return TinyBatchNormNet(name="tiny_bn", validation_target=1.0, test_target=1.0, max_runtime_sec=60, eval_period_sec=1, step_hint=100, batch_size=32)


def train(workload, model, state, queue, steps: int, first_step: int = 0):
    for step in range(first_step, first_step + steps):
        batch = sf.data_selection(workload, queue, state, model, None, HPARAMS, step, step)
        state, model, _ = sf.update_params(workload, model, workload.model_params_types, None, HPARAMS, batch, workload.loss_type, state, [], step, step)
    return state, model


def prepare(workload, model, state, step: int):
    state, model, _ = sf.prepare_for_eval(workload, model, workload.model_params_types, None, HPARAMS, workload.loss_type, state, [], step, step)
    return state, model


def test_eval_sees_the_average_with_batch_norm_statistics_recomputed_for_it() -> None:
    workload = tiny_workload()
    model, _ = workload.init_model_fn(0)
    state = sf.init_optimizer_state(workload, model, None, HPARAMS, 0)
    state, model = train(workload, model, state, workload.build_input_queue(1, 32), 30)
    beta1 = 1 - HPARAMS.one_minus_beta1
    optimizer = state["optimizer"]
    y = [p.detach().clone() for p in model.parameters()]
    z = [optimizer.state[p]["z"].clone() for p in model.parameters()]

    state, model = prepare(workload, model, state, 30)

    for p, y_p, z_p in zip(model.parameters(), y, z, strict=True):  # y = (1 - beta1) z + beta1 x
        torch.testing.assert_close(p.detach(), (y_p - (1 - beta1) * z_p) / beta1, rtol=1e-5, atol=1e-6)
    batches = list(state["recent_batches"])
    assert len(batches) == sf.RECALIBRATION_BATCHES
    with torch.no_grad():
        features = torch.cat([model[0](b["inputs"]) for b in batches])  # pre-BatchNorm activations at x
    torch.testing.assert_close(model[1].running_mean, features.mean(0), rtol=1e-5, atol=1e-5)
    logits, _ = workload.model_fn(model, batches[0], None, ForwardPassMode.EVAL, 0, update_batch_norm=False)
    assert torch.isfinite(logits).all()


def test_training_resumes_from_the_gradient_point_after_an_eval() -> None:
    workload = tiny_workload()
    model, _ = workload.init_model_fn(0)
    state = sf.init_optimizer_state(workload, model, None, HPARAMS, 0)
    queue = workload.build_input_queue(1, 32)
    state, model = train(workload, model, state, queue, 12)
    y = [p.detach().clone() for p in model.parameters()]
    state, model = prepare(workload, model, state, 12)
    assert not torch.allclose(next(model.parameters()), y[0])  # eval weights differ from y

    seen: list[list[torch.Tensor]] = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append([p.detach().clone() for p in module.parameters()]))
    state, model = train(workload, model, state, queue, 1, 12)
    hook.remove()

    assert len(seen) == 1 and state["optimizer"].param_groups[0]["train_mode"] is True
    for at_gradient, before_eval in zip(seen[0], y, strict=True):  # the gradient was taken at y again
        torch.testing.assert_close(at_gradient, before_eval, rtol=1e-5, atol=1e-6)
