"""benchmarks/gpu_workloads.py on the CPU with tiny models: every AlgoPerf workload's
`synthetic_batch` trains through the runner, so the GPU check runs as prepared when a GPU is lent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "wmt": ["batch_size=2", "d_model=32", "d_hid=32", "num_heads=2", "num_layers=1", "vocab_size=64", "max_length=16"],
    "ogbg": ["batch_size=4", "latent_dim=8", "hidden_dims=[8]"],
    "criteo1tb": ["batch_size=8", "vocab_size=1024", "embed_dim=8", "mlp_bottom_dims=[16,8]", "mlp_top_dims=[16,1]"],
    "fastmri": ["batch_size=2", "num_channels=2", "num_pool_layers=1"],
    "finewebedu_lm": ["batch_size=2", "width=32", "num_layers=1", "num_heads=2", "mlp_dim=64", "seq_len=16", "vocab_size=100"],
    "librispeech_conformer": ["batch_size=2", "encoder_dim=8", "num_heads=2", "num_layers=1", "vocab_size=16", "max_audio_length=8000",
                              "max_target_length=4"],
    "librispeech_deepspeech": ["batch_size=2", "encoder_dim=8", "num_lstm_layers=1", "num_ffn_layers=1", "vocab_size=16",
                               "max_audio_length=8000", "max_target_length=4"],
}


def test_every_algoperf_workload_steps_on_synthetic_batches():
    settings = [f"{workload}.{setting}" for workload, values in TINY.items() for setting in values]
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_workloads.py"), "--device", "cpu", "--precision", "fp32", "--warmup", "1", "--steps", "2",
                             "--workloads", *TINY, "--set", *settings], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert sorted(rows) == sorted(TINY)
    assert all(float(row[4]) > 0 for row in rows.values()), result.stdout  # step time in ms
