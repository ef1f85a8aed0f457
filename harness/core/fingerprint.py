"""Hardware and software fingerprint written into every run record, so that scoring can refuse
to compare times measured on different machines or stacks."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from harness import CONFIG_DIR

PACKAGE = "pacer-bench"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_id() -> str | None:
    """The CPU's family, model and stepping: virtual machines often show a generic model name
    ("AMD EPYC") for hosts of different generations, whose kernels and speeds differ."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
    except OSError:
        return None
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    parts = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return ", ".join(parts) or None


def git_commit() -> str | None:
    repo = CONFIG_DIR.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def fingerprint(device: torch.device, extra: dict[str, object] | None = None) -> dict[str, object]:
    """What the timing depends on. `id` hashes the parts that make times comparable
    (hardware, torch/CUDA, and run options such as precision or compile passed in `extra`)."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if device.type == "cuda" else []
    comparable = {
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels torch dispatches to: their numerics differ
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpus else None,
        "device": device.type,
    } | (extra or {})
    return comparable | {
        "id": hashlib.sha256(json.dumps(comparable, sort_keys=True).encode()).hexdigest()[:12],
        "driver": _nvidia_driver() if gpus else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "pacer": package_version(),
        "git_commit": git_commit(),
    }


def matmul_gflops(device: torch.device, size: int = 256, seconds: float = 0.5) -> float:
    """This machine's float32 matmul speed right now (GFLOP/s with the current torch threads):
    a reference for comparing calibrations made on different or differently loaded machines."""
    a = torch.randn(size, size, device=device)
    a @ a
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        count += 1
    return round(count * 2 * size ** 3 / elapsed / 1e9, 1)


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
