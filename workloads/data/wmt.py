"""WMT de-en as AlgoPerf's `dataset_setup.py --wmt` leaves it (TFDS TFRecord shards and a
SentencePiece model), read without TensorFlow: the `tfrecord` package reads the shards,
`sentencepiece` tokenizes, and the examples become flat numpy token arrays.

Source: `algoperf/workloads/wmt/input_pipeline.py` (splits, length filter, packing) and
`algoperf/workloads/wmt/tokenizer.py` (SentencePiece with an EOS appended, no BOS).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import crc32c
import numpy as np
import sentencepiece
import torch
from google.protobuf.message import DecodeError
from tfrecord import example_pb2
from tfrecord.reader import tfrecord_iterator
from torch.utils.data import Dataset

LAYOUT = ("<data_dir>/wmt_sentencepiece_model, <data_dir>/wmt17_translate/de-en/1.0.0/{dataset_info.json,"
          "wmt17_translate-train.tfrecord-NNNNN-of-NNNNN}, <data_dir>/wmt14_translate/de-en/1.0.0/{dataset_info.json,"
          "wmt14_translate-validation.tfrecord-NNNNN-of-NNNNN,wmt14_translate-test.tfrecord-NNNNN-of-NNNNN} "
          "(AlgoPerf's datasets/dataset_setup.py --wmt, data_dir=<its data_dir>/wmt)")
VOCAB_FILE = "wmt_sentencepiece_model"
SOURCES = {"train": "wmt17_translate", "validation": "wmt14_translate", "test": "wmt14_translate"}
"""The TFDS dataset each split is read from (AlgoPerf trains on WMT17, evaluates on WMT14)."""
VERSION_DIR = Path("de-en", "1.0.0")
INPUT_LANGUAGE, TARGET_LANGUAGE = "de", "en"
CHUNK = 65_536
"""Sentences tokenized at once: bounds the memory of Python lists of token ids."""


def split_dir(data_dir: Path, split: str) -> Path:
    return data_dir / SOURCES[split] / VERSION_DIR


def shard_paths(data_dir: Path, split: str) -> list[Path]:
    """The split's TFRecord shards in order (`<dataset>-<split>.tfrecord-00000-of-000NN`, ...)."""
    folder = split_dir(data_dir, split)
    return sorted(folder.glob(f"{SOURCES[split]}-{split}.tfrecord-*-of-*"))


def layout_problem(data_dir: Path) -> str | None:
    """What in `data_dir` does not fit `LAYOUT` (missing files, a SentencePiece model that
    does not load, a first record that is not a 'de'/'en' translation), or None."""
    if not data_dir.is_dir():
        return f"data_dir {data_dir} is not a directory"
    if not (data_dir / VOCAB_FILE).is_file():
        return f"no SentencePiece model {data_dir / VOCAB_FILE}"
    try:
        sentencepiece.SentencePieceProcessor(model_file=str(data_dir / VOCAB_FILE))
    except (OSError, RuntimeError):
        return f"{data_dir / VOCAB_FILE} is not a SentencePiece model"
    for split in SOURCES:
        if not (split_dir(data_dir, split) / "dataset_info.json").is_file():
            return f"no {split_dir(data_dir, split) / 'dataset_info.json'}"
        shards = shard_paths(data_dir, split)
        if not shards:
            return f"no {split} shards in {split_dir(data_dir, split)}"
        try:
            translation(first_record(shards[0]), shards[0])
        except (ValueError, UnicodeDecodeError, DecodeError):
            return f"{shards[0]} does not start with a TFRecord of {INPUT_LANGUAGE!r}/{TARGET_LANGUAGE!r} text features"
    return None


def first_record(path: Path) -> bytes:
    """The first record of a TFRecord file.

    Raises:
        ValueError: the file does not start with a TFRecord header (length and its masked CRC-32C).
    """
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
            raise ValueError(f"{path} is not a TFRecord file")
        length = struct.unpack("<Q", header[:8])[0]
        record = f.read(length)
    if len(record) != length:
        raise ValueError(f"{path} ends inside its first record")
    return record


def _masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def translation(record: bytes, path: Path) -> tuple[str, str]:
    """(German, English) of one serialized TFDS `Translation` example.

    Raises:
        ValueError: the record lacks the 'de' or 'en' bytes feature.
    """
    features = example_pb2.Example.FromString(record).features.feature
    if INPUT_LANGUAGE not in features or TARGET_LANGUAGE not in features:
        raise ValueError(f"{path}: a record without the {INPUT_LANGUAGE!r} and {TARGET_LANGUAGE!r} features")
    return (features[INPUT_LANGUAGE].bytes_list.value[0].decode("utf-8"),
            features[TARGET_LANGUAGE].bytes_list.value[0].decode("utf-8"))


def read_pairs(paths: Sequence[Path]) -> Iterator[tuple[str, str]]:
    """(German, English) sentences of every record of the shards, in order (see `translation`)."""
    for path in paths:
        for record in tfrecord_iterator(str(path)):
            yield translation(bytes(record), path)


@dataclasses.dataclass(frozen=True)
class TokenizedPairs:
    """Sentence pairs as token ids: example i's inputs are
    `inputs[input_offsets[i]:input_offsets[i + 1]]` (each sentence ends with EOS)."""

    inputs: np.ndarray
    input_offsets: np.ndarray
    targets: np.ndarray
    target_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.input_offsets) - 1

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return (self.inputs[self.input_offsets[i]:self.input_offsets[i + 1]],
                self.targets[self.target_offsets[i]:self.target_offsets[i + 1]])

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return np.diff(self.input_offsets), np.diff(self.target_offsets)


ARRAYS = tuple(f.name for f in dataclasses.fields(TokenizedPairs))


def tokenize(pairs: Iterator[tuple[str, str]], processor: sentencepiece.SentencePieceProcessor, vocab_size: int) -> TokenizedPairs:
    """SentencePiece ids of every pair, EOS appended (AlgoPerf's `TokenizeOp`)."""
    dtype = np.min_scalar_type(vocab_size - 1)  # uint16 for 32k tokens: half the memory
    columns: list[list[np.ndarray]] = [[], [], [], []]
    while chunk := list(itertools.islice(pairs, CHUNK)):
        for side, sentences in enumerate(zip(*chunk, strict=True)):
            ids = processor.encode(list(sentences), add_eos=True)
            columns[2 * side].append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype))
            columns[2 * side + 1].append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
    inputs, input_lengths, targets, target_lengths = (np.concatenate(c) if c else np.zeros(0, np.int64) for c in columns)
    return TokenizedPairs(inputs.astype(dtype), _offsets(input_lengths), targets.astype(dtype), _offsets(target_lengths))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


def tokenized_split(data_dir: Path, split: str, processor: sentencepiece.SentencePieceProcessor, vocab_size: int,
                    cache_dir: Path | None = None) -> TokenizedPairs:
    """The split's pairs tokenized; with `cache_dir`, saved there on first use as .npy files
    (in a folder named by the split and a hash of the SentencePiece model and the shards'
    names and sizes) and memory-mapped afterwards, which also lets processes share them."""
    if cache_dir is None:
        return tokenize(read_pairs(shard_paths(data_dir, split)), processor, vocab_size)
    folder = cache_dir / f"{split}-{_cache_key(data_dir, split, vocab_size)}"
    if not folder.is_dir():
        pairs = tokenize(read_pairs(shard_paths(data_dir, split)), processor, vocab_size)
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        partial.mkdir(parents=True)
        for name in ARRAYS:
            np.save(partial / f"{name}.npy", getattr(pairs, name))
        try:
            partial.rename(folder)  # atomic: a concurrent process (another rank) sees all or nothing
        except OSError:  # another process got there first
            shutil.rmtree(partial)
    return TokenizedPairs(**{name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS})


def _cache_key(data_dir: Path, split: str, vocab_size: int) -> str:
    digest = hashlib.sha256((data_dir / VOCAB_FILE).read_bytes())
    for path in shard_paths(data_dir, split):
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
    digest.update(f"vocab_size={vocab_size}".encode())  # sets the token dtype
    return digest.hexdigest()[:16]


def short_enough(pairs: TokenizedPairs, max_length: int) -> np.ndarray:
    """Indices of the pairs whose longer side has at most `max_length` tokens (AlgoPerf
    drops the others from every split)."""
    input_lengths, target_lengths = pairs.lengths()
    return np.flatnonzero(np.maximum(input_lengths, target_lengths) <= max_length)


def pack(pairs: TokenizedPairs, order: Sequence[int], max_length: int = 256, group: int = 256) -> list[list[int]]:
    """AlgoPerf's `pack_dataset`: `order` cut into groups of `group` consecutive examples;
    within a group, each example joins the current row while both its inputs and its
    targets still fit in `max_length` tokens, else starts the next row.

    Returns:
        The rows, each the list of the example indices it holds.
    """
    input_lengths, target_lengths = pairs.lengths()
    rows: list[list[int]] = []
    for start in range(0, len(order), group):
        row: list[int] = []
        used_inputs = used_targets = 0
        for i in order[start:start + group]:
            n_in, n_tgt = min(int(input_lengths[i]), max_length), min(int(target_lengths[i]), max_length)
            if row and (used_inputs + n_in > max_length or used_targets + n_tgt > max_length):
                rows.append(row)
                row, used_inputs, used_targets = [], 0, 0
            row.append(int(i))
            used_inputs, used_targets = used_inputs + n_in, used_targets + n_tgt
        rows.append(row)
    return rows


def _packed_side(pieces: Sequence[np.ndarray], max_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids, positions and segment ids (1, 2, ...; 0 for padding), each (max_length,)."""
    tokens, positions, segments = (torch.zeros(max_length, dtype=torch.int32) for _ in range(3))
    at = 0
    for segment, piece in enumerate(pieces, start=1):
        piece = piece[:max_length]
        tokens[at:at + len(piece)] = torch.from_numpy(piece.astype(np.int32))
        positions[at:at + len(piece)] = torch.arange(len(piece))
        segments[at:at + len(piece)] = segment
        at += len(piece)
    return tokens, positions, segments


class PackedExamples(Dataset[dict[str, torch.Tensor]]):
    """Training rows of packed examples: `inputs`, `inputs_position`,
    `inputs_segmentation`, `targets`, `targets_position`, `targets_segmentation`, each
    int32 (max_length,) (AlgoPerf's packed feature names)."""

    def __init__(self, pairs: TokenizedPairs, rows: list[list[int]], max_length: int):
        self.pairs, self.max_length = pairs, max_length
        # numpy, not lists of ints: forked DataLoader workers would copy every list they touch
        self.row_offsets = _offsets(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))
        self.members = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(self.row_offsets[-1]))

    def __len__(self) -> int:
        return len(self.row_offsets) - 1

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        examples = [self.pairs.pair(j) for j in self.members[self.row_offsets[i]:self.row_offsets[i + 1]]]
        example: dict[str, torch.Tensor] = {}
        for side, key in enumerate(("inputs", "targets")):
            tokens, positions, segments = _packed_side([e[side] for e in examples], self.max_length)
            example |= {key: tokens, f"{key}_position": positions, f"{key}_segmentation": segments}
        return example


class PaddedExamples(Dataset[dict[str, torch.Tensor]]):
    """Evaluation examples, one per row: `inputs` and `targets` int32 (max_length,), padded
    with 0 (AlgoPerf's static-shape eval batches)."""

    def __init__(self, pairs: TokenizedPairs, indices: Sequence[int] | np.ndarray, max_length: int):
        self.pairs, self.indices, self.max_length = pairs, indices, max_length

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        inputs, targets = self.pairs.pair(self.indices[i])
        return {"inputs": _packed_side([inputs], self.max_length)[0], "targets": _packed_side([targets], self.max_length)[0]}
