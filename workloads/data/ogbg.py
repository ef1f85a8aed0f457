"""ogbg-molpcba read from the TFRecord shards of TFDS `ogbg_molpcba:0.1.3` (what AlgoPerf's
`datasets/dataset_setup.py --ogbg` writes under `$DATA_DIR/ogbg`) without TensorFlow, and
graphs packed into batches as AlgoPerf's input pipeline (algoperf/workloads/ogbg/input_pipeline.py)
does: every bond becomes two directed edges, labels keep their NaNs until the batch, where
they become 0 with a 0 in the label mask.

TFDS stores each graph as a `tf.train.Example` whose tensors are flattened value lists:
`node_feat` (float, N x 9), `edge_feat` (float, B x 3), `edge_index` (int64, B x 2: sender,
receiver of each bond), `labels` (float, 128, NaN where missing), `num_nodes` (int64, [N]).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from tfrecord.reader import tfrecord_loader
from tfrecord.writer import TFRecordWriter

from workloads.models.ogbg import EDGE_FEATURES, NODE_FEATURES, Graphs

NUM_TASKS = 128
TFDS_NAME, TFDS_VERSION = "ogbg_molpcba", "0.1.3"
SPLITS = ("train", "validation", "test")
FEATURES = {"node_feat": "float", "edge_feat": "float", "edge_index": "int", "labels": "float", "num_nodes": "int"}
LAYOUT = (f"data_dir/{TFDS_NAME}/{TFDS_VERSION}/{TFDS_NAME}-<split>.tfrecord-<i>-of-<n> for split in train, validation, test "
          "(TFDS ogbg_molpcba:0.1.3, as AlgoPerf's `dataset_setup.py --ogbg` writes it under $DATA_DIR/ogbg)")
GraphExample = dict[str, np.ndarray]
"""One molecule: `node_feat` (N, 9) float32, `edge_feat` (B, 3) float32, `edge_index` (B, 2)
int64 (one row per bond), `labels` (128,) float32 with NaN for missing labels."""


class GraphBatch(TypedDict):
    """G graphs collated on the host by `collate_graphs`."""

    graphs: Graphs
    targets: torch.Tensor
    """(G, 128) float32 labels, 0 where missing."""
    label_mask: torch.Tensor
    """(G, 128) float32: 1 where the label is known, 0 where it was NaN."""


class DataLayoutError(ValueError):
    """The files do not have the TFDS layout (`LAYOUT`)."""


def shard_paths(data_dir: Path, split: str) -> list[Path]:
    """The split's shards in order.

    Raises:
        DataLayoutError: no shard, or a shard of `-of-<n>` missing.
    """
    folder = data_dir / TFDS_NAME / TFDS_VERSION
    pattern = re.compile(rf"{TFDS_NAME}-{split}\.tfrecord-(\d{{5}})-of-(\d{{5}})")
    found = sorted(((int(m.group(1)), int(m.group(2))), p) for p in folder.glob(f"{TFDS_NAME}-{split}.tfrecord-*")
                   if (m := pattern.fullmatch(p.name)))
    if not found:
        raise DataLayoutError(f"no {split} shards in {folder}")
    total = found[0][0][1]
    if [number for number, _ in found] != [(i, total) for i in range(total)]:
        raise DataLayoutError(f"the {split} shards in {folder} are not the complete set 00000-of-{total:05d} ... {total - 1:05d}-of-{total:05d}")
    return [p for _, p in found]


def parse_graph(record: dict[str, np.ndarray], where: str) -> GraphExample:
    """A record as `tfrecord_loader` yields it -> a `GraphExample`.

    Raises:
        DataLayoutError: the sizes of the flattened features disagree.
    """
    n = int(record["num_nodes"][0])
    nodes, edges, index = record["node_feat"], record["edge_feat"], record["edge_index"]
    if nodes.size != n * NODE_FEATURES or edges.size % EDGE_FEATURES or index.size * EDGE_FEATURES != edges.size * 2 \
            or record["labels"].size != NUM_TASKS:
        raise DataLayoutError(f"{where}: a graph's features have inconsistent sizes (num_nodes {n}, node_feat {nodes.size}, "
                              f"edge_feat {edges.size}, edge_index {index.size}, labels {record['labels'].size})")
    return {"node_feat": nodes.astype(np.float32).reshape(n, NODE_FEATURES), "edge_feat": edges.astype(np.float32).reshape(-1, EDGE_FEATURES),
            "edge_index": index.astype(np.int64).reshape(-1, 2), "labels": record["labels"].astype(np.float32)}


def read_records(path: Path, limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The shard's records (its first `limit` if given), with the `FEATURES` keys.

    Raises:
        DataLayoutError: a record lacks a feature, or the file is not TFRecord.
    """
    with open(path, "rb") as f:
        header = f.read(12)
    if header and (len(header) < 12 or TFRecordWriter.masked_crc(header[:8]) != header[8:]):
        # tfrecord_loader checks no checksum: a garbage length would have it allocate that much
        raise DataLayoutError(f"{path}: unreadable as TFRecord (the first record's length fails its checksum)")
    records: list[dict[str, np.ndarray]] = []
    try:
        for record in tfrecord_loader(str(path), None, FEATURES):
            if limit is not None and len(records) == limit:
                break
            records.append(record)
    except KeyError as e:
        raise DataLayoutError(f"{path}: a record lacks a feature ({e})") from None
    except (OSError, RuntimeError, ValueError, OverflowError, MemoryError) as e:  # truncated or not TFRecord
        raise DataLayoutError(f"{path}: unreadable as TFRecord ({e})") from None
    return records


@dataclass(frozen=True)
class PackedGraphs:
    """A split's graphs packed into flat arrays (few Python objects, so DataLoader workers
    share them without copying); graph i has nodes node_offsets[i]:node_offsets[i+1], bonds
    likewise."""

    node_feat: np.ndarray
    edge_feat: np.ndarray
    edge_index: np.ndarray
    """(bonds, 2) int32, numbered within each graph."""
    labels: np.ndarray
    node_offsets: np.ndarray
    edge_offsets: np.ndarray

    @classmethod
    def read(cls, data_dir: Path, split: str) -> PackedGraphs:
        """All graphs of a split, in shard order.

        Raises:
            DataLayoutError: see `shard_paths`, `read_records` and `parse_graph`.
        """
        graphs = [parse_graph(record, str(path)) for path in shard_paths(data_dir, split) for record in read_records(path)]
        if not graphs:
            raise DataLayoutError(f"the {split} shards hold no graphs")
        node_counts = [len(g["node_feat"]) for g in graphs]
        edge_counts = [len(g["edge_index"]) for g in graphs]
        return cls(
            node_feat=np.concatenate([g["node_feat"] for g in graphs]),
            edge_feat=np.concatenate([g["edge_feat"] for g in graphs]),
            edge_index=np.concatenate([g["edge_index"] for g in graphs]).astype(np.int32),
            labels=np.stack([g["labels"] for g in graphs]),
            node_offsets=np.concatenate([[0], np.cumsum(node_counts)]),
            edge_offsets=np.concatenate([[0], np.cumsum(edge_counts)]))


class GraphDataset(torch.utils.data.Dataset):
    """Graph i of a `PackedGraphs` as a `GraphExample`."""

    def __init__(self, packed: PackedGraphs):
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed.labels)

    def __getitem__(self, i: int) -> GraphExample:
        p = self.packed
        nodes, edges = slice(p.node_offsets[i], p.node_offsets[i + 1]), slice(p.edge_offsets[i], p.edge_offsets[i + 1])
        return {"node_feat": p.node_feat[nodes], "edge_feat": p.edge_feat[edges], "edge_index": p.edge_index[edges], "labels": p.labels[i]}


def collate_graphs(examples: Sequence[GraphExample]) -> GraphBatch:
    """G graphs -> one `GraphBatch`; in `graphs`, each bond is two directed edges: the
    graph's bonds forward, then backward, as AlgoPerf's `_to_jraph`.

    Every batch holds exactly its G graphs (no padding graph, no node or edge budget): the
    training stream counts examples, and eager PyTorch needs no static shapes.
    """
    n_node = np.array([len(e["node_feat"]) for e in examples], dtype=np.int64)
    n_bond = np.array([len(e["edge_index"]) for e in examples], dtype=np.int64)
    first_node = np.concatenate([[0], np.cumsum(n_node)[:-1]])
    senders, receivers, edges = [], [], []
    for example, offset in zip(examples, first_node, strict=True):
        s, r = example["edge_index"][:, 0] + offset, example["edge_index"][:, 1] + offset
        senders += [s, r]
        receivers += [r, s]
        edges += [example["edge_feat"], example["edge_feat"]]
    labels = np.stack([e["labels"] for e in examples])
    missing = np.isnan(labels)
    graphs = Graphs(
        nodes=torch.from_numpy(np.concatenate([e["node_feat"] for e in examples]).reshape(-1, NODE_FEATURES)),
        edges=torch.from_numpy(np.concatenate(edges).reshape(-1, EDGE_FEATURES)),
        senders=torch.from_numpy(np.concatenate(senders).astype(np.int64)),
        receivers=torch.from_numpy(np.concatenate(receivers).astype(np.int64)),
        n_node=torch.from_numpy(n_node), n_edge=torch.from_numpy(2 * n_bond))
    return GraphBatch(graphs=graphs, targets=torch.from_numpy(np.where(missing, 0.0, labels).astype(np.float32)),
                      label_mask=torch.from_numpy((~missing).astype(np.float32)))
