"""Tiny ogbg-molpcba in the TFRecord layout of TFDS `ogbg_molpcba:0.1.3`, for tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tfrecord import TFRecordWriter

SIZES = {"train": 10, "validation": 5, "test": 3}
SHARDS = {"train": 2, "validation": 1, "test": 1}


def random_graph(rng: np.random.Generator, positive_rate: float = 0.5) -> dict[str, np.ndarray]:
    """A molecule of 1-6 atoms and 0-6 bonds; each label 0, 1 or missing (NaN)."""
    n, bonds = int(rng.integers(1, 7)), int(rng.integers(0, 7))
    labels = (rng.random(128) < positive_rate).astype(np.float32)
    labels[rng.random(128) < 0.3] = np.nan
    return {"node_feat": rng.integers(0, 10, (n, 9)).astype(np.float32), "edge_feat": rng.integers(0, 4, (bonds, 3)).astype(np.float32),
            "edge_index": rng.integers(0, n, (bonds, 2)), "labels": labels}


def write_record(writer: TFRecordWriter, graph: dict[str, np.ndarray]) -> None:
    """One `tf.train.Example` as TFDS serializes it: tensors flattened to value lists."""
    writer.write({"node_feat": (graph["node_feat"].ravel().tolist(), "float"), "edge_feat": (graph["edge_feat"].ravel().tolist(), "float"),
                  "edge_index": (graph["edge_index"].ravel().tolist(), "int"), "labels": (graph["labels"].tolist(), "float"),
                  "num_nodes": ([len(graph["node_feat"])], "int"), "num_edges": ([len(graph["edge_index"])], "int")})


def make_ogbg(root: Path, sizes: dict[str, int] = SIZES, seed: int = 0, positive_rate: float = 0.5) -> dict[str, list[dict[str, np.ndarray]]]:
    """`root/ogbg_molpcba/0.1.3/ogbg_molpcba-<split>.tfrecord-<i>-of-<n>` (+ dataset_info.json);
    returns the graphs written, per split, in order."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbg_molpcba" / "0.1.3"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, size in sizes.items():
        graphs = [random_graph(rng, positive_rate) for _ in range(size)]
        shards = SHARDS.get(split, 1)
        for i, part in enumerate(np.array_split(np.arange(size), shards)):
            writer = TFRecordWriter(str(folder / f"ogbg_molpcba-{split}.tfrecord-{i:05d}-of-{shards:05d}"))
            for j in part:
                write_record(writer, graphs[j])
            writer.close()
        written[split] = graphs
    (folder / "dataset_info.json").write_text(json.dumps({"name": "ogbg_molpcba", "version": "0.1.3"}))
    return written
