"""How much Pacer's runner costs on a GPU: imagenet_resnet50 steps/s through `harness.core.runner`
against a bare torchvision training loop, on the same synthetic batch, batch size and
precision, with and without `torch.compile`.

Both sides train ResNet-50 (Pacer's AlgoPerf definition, architecturally torchvision's) with
SGD + momentum + the same LR schedule on one fixed device-resident batch, so neither reads
data: the difference is the runner (its clock synchronises the device around every timed
step, the submission API, the input-queue call). Goal: runner time per step / bare time per
step <= 1.02.

    python benchmarks/gpu_overhead.py                      # one H100: < 5 minutes
    python benchmarks/gpu_overhead.py --pacer-model-baseline   # + bare loop on Pacer's model (one more compile)
    python benchmarks/gpu_overhead.py --device cpu --batch-size 2 --image-size 32 --warmup 2 --steps 3 --compile off   # smoke test
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from harness.core.fingerprint import cpu_model
from harness.core.runner import Runner, RunSettings
from harness.core.spec import Batch, EvalResults, Hyperparameters, InputQueue
from harness.plugins.submission_kit import WarmupLinearDecay
from harness.plugins.workloads import workload_config
from submissions import momentum
from workloads.imagenet_resnet50 import ImagenetResNet50
from workloads.models.resnet import resnet50

HPARAMS = {"learning_rate": 0.1, "one_minus_beta1": 0.1, "weight_decay": 5e-5, "warmup_factor": 0.05,
           "decay_steps_factor": 0.9, "end_factor": 0.01, "label_smoothing": 0.0, "dropout_rate": 0.0}


class FixedBatchQueue(InputQueue):
    """The same device batch forever."""

    def __init__(self, batch: Batch):
        self.batch = batch

    def take(self, n: int) -> Batch:
        return self.batch

    def __next__(self) -> Batch:
        return self.batch

    def state_dict(self) -> dict[str, object]:
        return {}

    def load_state_dict(self, state: object) -> None:
        pass


class SyntheticImagenetResNet50(ImagenetResNet50):
    """imagenet_resnet50 on one synthetic batch; evaluation is skipped (it is untimed)."""

    def __init__(self, batch: Batch, **config: object):
        self.batch = batch
        super().__init__(**config)

    def check_data(self) -> None:
        pass

    def build_input_queue(self, data_rng: int, global_batch_size: int) -> FixedBatchQueue:
        return FixedBatchQueue(self.batch)

    def eval_model(self, global_batch_size: int, params: torch.nn.Module, model_state: None, rng: int, global_step: int) -> EvalResults:
        return {f"{split}/{metric}": 0.0 for split in ("train", "validation", "test") for metric in ("loss", "accuracy")}


def synthetic_batch(args: argparse.Namespace) -> Batch:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g)
    targets = torch.randint(0, 1000, (args.batch_size,), generator=g)
    return {"inputs": inputs.to(args.device, memory_format=torch.channels_last), "targets": targets.to(args.device)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def runner_seconds_per_step(args: argparse.Namespace, batch: Batch, compile_model: bool) -> float:
    """Wall time per step of the Pacer runner over steps warmup+1 .. warmup+steps."""
    config = workload_config("imagenet_resnet50") | {"precision": args.precision, "compile": compile_model, "image_size": args.image_size}
    config = {k: v for k, v in config.items() if k not in ("variants", "_target_")}
    workload = SyntheticImagenetResNet50(batch, **(config | {"device": args.device}))
    started: list[float] = []

    def update_params(*a: object, **kw: object) -> tuple[object, object, object]:
        if kw["global_step"] == args.warmup:  # global_step: start the clock once the warmup (and compilation) is over
            sync(args.device)
            started.append(time.perf_counter())
        return momentum.update_params(*a, **kw)

    submission = SimpleNamespace(get_batch_size=lambda name: args.batch_size, init_optimizer_state=momentum.init_optimizer_state,
                                 update_params=update_params, data_selection=momentum.data_selection)
    settings = RunSettings(seed=0, max_steps=args.warmup + args.steps, eval_every_steps=10**9)
    outcome = Runner(workload, submission, Hyperparameters(HPARAMS), settings).run()
    sync(args.device)
    if outcome.status != "step_cap":
        raise RuntimeError(f"runner ended {outcome.status}: {outcome.error}")
    return (time.perf_counter() - started[0]) / args.steps


def bare_seconds_per_step(args: argparse.Namespace, batch: Batch, compile_model: bool, pacer_model: bool = False) -> float:
    """Wall time per step of a plain torchvision loop doing the same work (with Pacer's
    ResNet-50 definition instead of torchvision's when `pacer_model`)."""
    torch.manual_seed(0)
    model = resnet50() if pacer_model else torchvision.models.resnet50()
    model = model.to(args.device, memory_format=torch.channels_last)
    if compile_model:
        model.compile()
    optimizer = torch.optim.SGD(model.parameters(), lr=HPARAMS["learning_rate"], momentum=1 - HPARAMS["one_minus_beta1"], weight_decay=HPARAMS["weight_decay"])
    step_hint = workload_config("imagenet_resnet50")["step_hint"]
    schedule = WarmupLinearDecay(int(HPARAMS["warmup_factor"] * step_hint), int(HPARAMS["decay_steps_factor"] * step_hint), HPARAMS["end_factor"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    device_type = torch.device(args.device).type

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(batch["inputs"])
        F.cross_entropy(logits.float(), batch["targets"]).backward()
        optimizer.step()
        scheduler.step()

    return timed(step, args)


def timed(step: Callable[[], None], args: argparse.Namespace) -> float:
    for _ in range(args.warmup):
        step()
    sync(args.device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(args.device)
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--precision", choices=("bf16", "fp32", "tf32"), default="bf16")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--compile", choices=("both", "on", "off"), default="both")
    parser.add_argument("--pacer-model-baseline", action="store_true",
                        help="also time the bare loop with Pacer's ResNet-50 definition, to separate the runner's cost from the model's")
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model()
    print(f"device: {device_name}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"imagenet_resnet50, batch {args.batch_size} x {args.image_size}px, {args.precision}, channels-last; {args.warmup} warmup + {args.steps} timed steps")
    batch = synthetic_batch(args)
    modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    per_step = {}
    for compile_model in modes:
        bare = bare_seconds_per_step(args, batch, compile_model)
        runner = runner_seconds_per_step(args, batch, compile_model)
        per_step[compile_model] = runner
        print(f"compile={str(compile_model).lower():5}  bare {1 / bare:7.2f} steps/s ({1000 * bare:7.1f} ms/step)  "
              f"runner {1 / runner:7.2f} steps/s ({1000 * runner:7.1f} ms/step)  runner/bare time ratio {runner / bare:.3f} (goal <= 1.02)")
        if args.pacer_model_baseline:
            same_model = bare_seconds_per_step(args, batch, compile_model, pacer_model=True)
            print(f"compile={str(compile_model).lower():5}  bare loop, Pacer's model {1000 * same_model:7.1f} ms/step  runner/that {runner / same_model:.3f}")
    if len(per_step) == 2:
        print(f"compile speedup through the runner: {per_step[False] / per_step[True]:.2f}x "
              f"({1000 * per_step[False]:.1f} -> {1000 * per_step[True]:.1f} ms/step)")


if __name__ == "__main__":
    main()
