"""Runner overhead on mnist1d_mlp (tiny steps: the worst case).

In one process, the same model, data, batch size and optimizer (NAdamW with its schedule)
train for the same number of steps twice: once as a bare PyTorch loop and once through
`harness.runner.Runner` with evaluation only at step 1 (untimed, excluded from the figure).
Repeats alternate the two to share the machine's noise; the medians are compared.

    .venv/bin/python benchmarks/runner_overhead.py [--steps 3000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness import hparams as hparamslib
from harness import rng as rnglib
from harness.cli import compose_config
from harness.runner import Runner, RunSettings
from harness.submissions import load_submission
from harness.workloads import build_workload


def setup():
    cfg = compose_config([])
    workload = build_workload(cfg.workload)
    submission = load_submission(cfg.submission)
    hp = hparamslib.resolve(submission.search_space, submission.default, {}, "benchmark")
    return workload, submission, hp


def bare_loop(workload, submission, hp, steps: int) -> float:
    """Steps per second of a plain loop: index the tensors, forward, the workload's loss,
    backward, step (the loss is part of the benchmark's work, not of the runner's)."""
    init_rng, data_rng, _, _ = rnglib.split(0, 4)
    model, _ = workload.init_model_fn(init_rng)
    state = submission.impl.init_optimizer_state(workload, model, None, hp, 0)
    optimizer, scheduler = state["optimizer"], state["scheduler"]
    x, y = workload.splits.train.inputs, workload.splits.train.targets
    batch = workload.reference_batch_size
    order = torch.randperm(len(x), generator=rnglib.generator(data_rng))
    start = time.perf_counter()
    for step in range(steps):
        offset = (step * batch) % (len(x) - batch)
        index = order[offset:offset + batch]
        optimizer.zero_grad(set_to_none=True)
        model.train()
        loss = workload.loss_fn(y[index], model(x[index]))
        (loss["summed"] / loss["n_valid_examples"]).backward()
        optimizer.step()
        scheduler.step()
    return steps / (time.perf_counter() - start)


def through_runner(workload, submission, hp, steps: int) -> float:
    """Steps per second through the runner, eval time excluded."""
    runner = Runner(workload, submission.impl, hp, RunSettings(seed=0, max_steps=steps, eval_every_steps=steps + 1, max_runtime_sec=1e9))
    start = time.perf_counter()
    outcome = runner.run()
    elapsed = time.perf_counter() - start - runner.clock.totals["eval"] - runner.clock.totals["logging"]
    assert outcome.status == "step_cap", outcome.error
    setup_time = runner.clock.started - start
    return steps / (elapsed - setup_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workload, submission, hp = setup()
    _ = workload.splits  # build the data before timing
    bare, runner = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(workload, submission, hp, args.steps))
        runner.append(through_runner(workload, submission, hp, args.steps))
    b, r = statistics.median(bare), statistics.median(runner)
    print(f"mnist1d_mlp, nadamw, batch {workload.reference_batch_size}, {args.steps} steps x {args.repeats} repeats, torch threads {torch.get_num_threads()}")
    print(f"bare loop: {b:8.1f} steps/s (runs: {', '.join(f'{v:.0f}' for v in bare)})")
    print(f"runner:    {r:8.1f} steps/s (runs: {', '.join(f'{v:.0f}' for v in runner)})")
    print(f"runner cost: {100 * (b / r - 1):+.2f}% time per step (goal < 2%)")


if __name__ == "__main__":
    main()
