"""Tiny FineWeb-Edu token data in AlgoPerf's on-disk format: the Hugging Face `datasets`
`save_to_disk` folders that `dataset_setup.py --finewebedu` writes (Arrow IPC stream files
with an `input_ids` list<int32> column, `state.json`, `dataset_info.json`), written here
with pyarrow alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

FEATURES = {"input_ids": {"feature": {"dtype": "int32", "_type": "Value"}, "_type": "Sequence"}}


def documents(n_tokens: int, vocab: int, seed: int) -> list[list[int]]:
    """Token lists of 1-40 ids totalling at least `n_tokens`, each ended by EOS (`vocab - 1`)."""
    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < n_tokens:
        body = rng.integers(0, vocab - 1, int(rng.integers(0, 40))).tolist()
        docs.append([*body, vocab - 1])
        total += len(docs[-1])
    return docs


def write_hf_split(split_dir: Path, docs: list[list[int]], n_files: int = 2, rows_per_batch: int = 7) -> None:
    """`docs` as a `save_to_disk` folder of `n_files` Arrow stream files."""
    split_dir.mkdir(parents=True)
    schema = pa.schema([pa.field("input_ids", pa.list_(pa.int32()))], metadata={"huggingface": json.dumps({"info": {"features": FEATURES}})})
    names = [f"data-{i:05d}-of-{n_files:05d}.arrow" for i in range(n_files)]
    for name, part in zip(names, np.array_split(np.arange(len(docs)), n_files), strict=True):
        with pa.OSFile(str(split_dir / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for start in range(0, len(part), rows_per_batch):
                rows = [docs[i] for i in part[start:start + rows_per_batch]]
                writer.write_batch(pa.record_batch([pa.array(rows, type=pa.list_(pa.int32()))], schema=schema))
    state = {"_data_files": [{"filename": name} for name in names], "_fingerprint": "0" * 16, "_format_columns": None,
             "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}
    (split_dir / "state.json").write_text(json.dumps(state))
    (split_dir / "dataset_info.json").write_text(json.dumps({"features": FEATURES}))


def make_algoperf_finewebedu(root: Path, train_tokens: int, val_tokens: int, vocab: int) -> dict[str, list[int]]:
    """AlgoPerf's layout under `root` (`train/`, `val/`); returns each folder's token stream."""
    streams = {}
    for seed, (stem, n_tokens) in enumerate((("train", train_tokens), ("val", val_tokens))):
        docs = documents(n_tokens, vocab, seed)
        write_hf_split(root / stem, docs)
        streams[stem] = [token for doc in docs for token in doc]
    return streams
