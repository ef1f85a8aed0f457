"""Step time and peak memory of AlgoPerf's GPU workloads, each through Pacer's runner at
AlgoPerf's batch size (the config's `batch_size`) on synthetic batches (`synthetic_batch`: the
real shapes, no data on disk), with NAdamW at its default point.

For each workload: `warmup` steps (compilation, allocator, cuDNN autotuning), then `steps`
steps timed as a whole with the device synchronised at both ends; the step 1 eval runs on one
synthetic batch and is not timed. One H100/H200-class GPU runs the whole list in under 8
minutes; a workload that does not fit is reported as out of memory and the list goes on.

    python benchmarks/gpu_workloads.py                      # every AlgoPerf workload that has a config
    python benchmarks/gpu_workloads.py --workloads wmt ogbg --precision bf16
    python benchmarks/gpu_workloads.py --device cpu --workloads ogbg --warmup 1 --steps 2 \\
        --set ogbg.batch_size=4 ogbg.hidden_dims=[8] ogbg.latent_dim=8   # smoke test
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without installing

from gpu_overhead import FixedBatchQueue  # noqa: E402

from harness.core.fingerprint import cpu_model  # noqa: E402
from harness.core.runner import Runner, RunSettings  # noqa: E402
from harness.core.spec import EvalResults, ForwardPassMode, InputQueue, ParameterContainer  # noqa: E402
from harness.plugins.hparams import resolve  # noqa: E402
from harness.plugins.submissions import load_submission  # noqa: E402
from harness.plugins.workloads import NON_CONSTRUCTOR_KEYS, resolve_variant, workload_config, workload_names  # noqa: E402

ALGOPERF_WORKLOADS = ("finewebedu_lm", "wmt", "ogbg", "criteo1tb", "librispeech_conformer", "librispeech_deepspeech", "fastmri")


def synthetic(cls: type) -> type:
    """`cls` fed by its own `synthetic_batch` instead of its data directory: no data check, a
    fixed device batch as the input queue, and an eval of the loss on that batch (the other
    metrics NaN; the run does not stop at a target)."""

    class Synthetic(cls):  # type: ignore[misc, valid-type]
        def check_data(self) -> None:
            pass

        def build_input_queue(self, data_rng: int, global_batch_size: int) -> InputQueue:
            return FixedBatchQueue(self.synthetic_batch(global_batch_size, seed=data_rng % (1 << 31)))

        def eval_model(self, global_batch_size: int, params: ParameterContainer, model_state: object, rng: int, global_step: int) -> EvalResults:
            batch = self.synthetic_batch(global_batch_size)
            logits, _ = self.model_fn(params, batch, model_state, ForwardPassMode.EVAL, rng, update_batch_norm=False)
            loss = self.loss_fn(batch["targets"], logits, batch.get("weights"))
            mean = float(loss["summed"] / loss["n_valid_examples"])
            metric = {f"{split}/{self.target_metric_name}": math.nan for split in ("validation", "test")}
            return metric | {"train/loss": mean, "validation/loss": mean}

    Synthetic.__name__ = f"Synthetic{cls.__name__}"
    return Synthetic


def build(name: str, device: str, precision: str | None, overrides: dict[str, object]) -> object:
    import hydra.utils

    cfg = resolve_variant(workload_config(name) | overrides, None)
    kwargs = {k: v for k, v in cfg.items() if k not in NON_CONSTRUCTOR_KEYS} | {"device": device, "num_workers": 0, "eval_num_workers": 0}
    if precision:
        kwargs["precision"] = precision
    return synthetic(hydra.utils.get_class(str(cfg["_target_"])))(**kwargs)


def measure(name: str, device: str, precision: str | None, warmup: int, steps: int, overrides: dict[str, object]) -> dict[str, object]:
    workload = build(name, device, precision, overrides)
    submission = load_submission(yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "submission" / "nadamw.yaml").read_text()))
    hparams = resolve(submission.search_space, submission.default, {}, "nadamw")
    runner = Runner(workload, submission.impl, hparams, RunSettings(seed=0, eval_every_steps=10**9, max_runtime_sec=1e9, stop_at_target=False))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    runner.setup()
    for _ in range(warmup):
        runner.step()  # step 1 also evaluates (untimed here: before the clock below starts)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        runner.step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if runner.outcome.status != "running":
        raise RuntimeError(f"{name}: the run ended {runner.outcome.status}: {runner.outcome.error}")
    return {"workload": name, "batch_size": workload.reference_batch_size, "precision": workload.precision, "step_ms": 1000 * seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "params_m": sum(p.numel() for p in runner.params.parameters()) / 1e6}


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, object]]:
    """`WORKLOAD.KEY=VALUE` (the value read as YAML) -> {workload: {key: value}}."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        target, _, value = item.partition("=")
        workload, _, key = target.partition(".")
        out.setdefault(workload, {})[key] = yaml.safe_load(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=[w for w in ALGOPERF_WORKLOADS if w in workload_names()])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=["bf16", "fp32", "tf32"], default=None, help="default: each workload's config")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--set", nargs="*", default=[], help="WORKLOAD.KEY=VALUE config overrides (smoke tests)")
    opts = parser.parse_args(argv)
    overrides = parse_overrides(opts.set)
    gpu = torch.cuda.get_device_name() if opts.device == "cuda" else cpu_model()
    print(f"{gpu}; torch {torch.__version__}; {platform.node()}; {opts.warmup} warm-up + {opts.steps} timed steps per workload, NAdamW default point")
    print(f"{'workload':<24} {'batch':>7} {'precision':>9} {'params (M)':>10} {'step (ms)':>10} {'peak (GiB)':>10}")
    failed = 0
    for name in opts.workloads:
        try:
            row = measure(name, opts.device, opts.precision, opts.warmup, opts.steps, overrides.get(name, {}))
        except torch.OutOfMemoryError:
            print(f"{name:<24} out of memory at its AlgoPerf batch size")
            failed += 1
            continue
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        print(f"{row['workload']:<24} {row['batch_size']:>7} {row['precision']:>9} {row['params_m']:>10.1f} {row['step_ms']:>10.1f} {row['peak_gib']:>10.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
