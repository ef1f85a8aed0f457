"""Runner overhead on mnist1d_mlp (tiny steps: the worst case).

In one process, the same model, data, batch size and optimizer (NAdamW with its schedule)
train for the same number of steps twice: once as a bare PyTorch loop and once through
`harness.runner.Runner` with evaluation only at step 1 (untimed, excluded from the figure).
Each repeat times one bare run and one runner run back to back (in alternating order, so
that a drift in the machine's speed favours neither) and yields their ratio; the figure is
the median of the per-pair ratios, with its interquartile range, which is robust to the
shared VM's slow swings in a way that comparing the two medians is not.

    .venv/bin/python benchmarks/runner_overhead.py [--steps 1000] [--repeats 15]
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
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    workload, submission, hp = setup()
    _ = workload.splits  # build the data before timing
    through_runner(workload, submission, hp, 100)  # warm up allocator and thread pools
    bare, runner = [], []
    for repeat in range(args.repeats):
        pair = (bare_loop, through_runner) if repeat % 2 == 0 else (through_runner, bare_loop)
        speeds = {f.__name__: f(workload, submission, hp, args.steps) for f in pair}
        bare.append(speeds["bare_loop"])
        runner.append(speeds["through_runner"])
    costs = sorted(100 * (b / r - 1) for b, r in zip(bare, runner, strict=True))
    q1, median, q3 = statistics.quantiles(costs, n=4)
    print(f"mnist1d_mlp, nadamw, batch {workload.reference_batch_size}, {args.steps} steps x {args.repeats} pairs, torch threads {torch.get_num_threads()}")
    print(f"bare loop: median {statistics.median(bare):.0f} steps/s (range {min(bare):.0f}-{max(bare):.0f})")
    print(f"runner:    median {statistics.median(runner):.0f} steps/s (range {min(runner):.0f}-{max(runner):.0f})")
    print(f"runner cost per step, median of the pairs: {median:+.2f}% (interquartile {q1:+.2f}% .. {q3:+.2f}%; goal < 2%)")


if __name__ == "__main__":
    main()
