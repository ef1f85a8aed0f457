"""Criteo 1TB click logs: AlgoPerf's raw TSV files -> memory-mapped arrays, and a reader.

AlgoPerf's `datasets/dataset_setup.py --criteo1tb` leaves the 24 days of click logs
uncompressed and split into files of 5,000,000 lines, `day_<d>_<NN>` (d in 0..23, NN from
00; day 23 has 36 files). Each line is `label \\t 13 integers \\t 26 hex strings`, any field
possibly empty. AlgoPerf (`algoperf/workloads/criteo1tb/input_pipeline.py`) parses them with
TensorFlow at every step; `convert` does the same preprocessing once:

* integers: empty and "-1" read as 0, then `log(max(x, 0) + 1)` in float32;
* categorical column i: the string (empty reads as "00000000") with `str(i)` appended,
  hashed by TensorFlow's `to_hash_bucket_fast` (FarmHash `Fingerprint64` mod the column's
  raw vocabulary size, `VOCAB_SIZES[i]`), then rounded through float32 as AlgoPerf's batch
  is (it carries the ids in the float32 inputs); the model reduces them mod its table size;
* splits: train is days 0-22, test the first 19 files of day 23 (`day_23_00`-`day_23_18`),
  validation the other 17, as AlgoPerf's input pipeline.

`pacer data convert criteo1tb SRC DEST` writes, for each split, `DEST/<split>/`
`dense.npy` (float32 (N, 13)), `categorical.npy` (int32 (N, 26)) and `labels.npy`
(float32 (N,)), parsing blocks of text with pyarrow so that memory stays bounded.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import torch
from torch.utils.data import Dataset, default_collate

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1  # AlgoPerf: test is the first 19 files of day 23
SPLITS = ("train", "validation", "test")
ARRAYS = {"dense": (np.float32, (NUM_DENSE,)), "categorical": (np.int32, (NUM_SPARSE,)), "labels": (np.float32, ())}
VOCAB_SIZES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)
"""Raw vocabulary size of each categorical column (AlgoPerf's `_VOCAB_SIZES`)."""
RAW_FILE = re.compile(r"day_(\d+)_(\d+)")
RAW_LAYOUT = "raw: AlgoPerf's day_<d>_<NN> TSV files (d 0..23, 5M lines each; day_23_00..day_23_35)"
CONVERTED_LAYOUT = ("converted (pacer data convert criteo1tb RAW_DIR DATA_DIR): "
                    "{train,validation,test}/{dense,categorical,labels}.npy")

T = TypeVar("T")

# FarmHash (farmhashna) constants.
_K0, _K2 = np.uint64(0xC3A5C85C97CB3127), np.uint64(0x9AE16A3B2F90404F)
_DEFAULT_CATEGORY = b"00000000"  # AlgoPerf's decode_csv default for an empty categorical field
_FIELDS = ["label", *(f"int_{i}" for i in range(NUM_DENSE)), *(f"cat_{i}" for i in range(NUM_SPARSE))]


def _rotate(x: np.ndarray, shift: int) -> np.ndarray:
    return (x >> np.uint64(shift)) | (x << np.uint64(64 - shift))


def _shift_mix(x: np.ndarray) -> np.ndarray:
    return x ^ (x >> np.uint64(47))


def _hash_len_16(u: np.ndarray, v: np.ndarray, mul: np.uint64) -> np.ndarray:
    a = _shift_mix((u ^ v) * mul)
    b = _shift_mix((v ^ a) * mul)
    return b * mul


def _words(data: np.ndarray, start: int, width: int) -> np.ndarray:
    """Little-endian words of `width` (4 or 8) bytes at byte `start` of rows uint8 (M, L): uint64 (M,)."""
    word = np.ascontiguousarray(data[:, start:start + width]).view("<u8" if width == 8 else "<u4")
    return word[:, 0].astype(np.uint64)


def fingerprint_rows(data: np.ndarray) -> np.ndarray:
    """FarmHash `Fingerprint64` of M byte strings of one length L <= 16, given as uint8 (M, L):
    uint64 (M,). (farmhashna's `HashLen0to16`, the branch every string of 16 bytes or fewer takes.)

    Raises:
        ValueError: L > 16 (branches for longer strings are not written here).
    """
    rows, length = data.shape
    if length > 16:
        raise ValueError(f"fingerprint64 takes strings of at most 16 bytes, not {length}")
    n = np.uint64(length)
    mul = _K2 + n * np.uint64(2)
    with np.errstate(over="ignore"):
        if length >= 8:
            a, b = _words(data, 0, 8) + _K2, _words(data, length - 8, 8)
            return _hash_len_16(_rotate(b, 37) * mul + a, (_rotate(a, 25) + b) * mul, mul)
        if length >= 4:
            return _hash_len_16(n + (_words(data, 0, 4) << np.uint64(3)), _words(data, length - 4, 4), mul)
        if length > 0:
            first, middle, last = (data[:, i].astype(np.uint64) for i in (0, length >> 1, length - 1))
            y, z = first + (middle << np.uint64(8)), n + (last << np.uint64(2))
            return _shift_mix(y * _K2 ^ z * _K0) * _K2
    return np.full(rows, _K2)


def fingerprint64(strings: Sequence[bytes]) -> np.ndarray:
    """FarmHash `Fingerprint64` (TensorFlow's `Fingerprint64`, which `to_hash_bucket_fast`
    uses) of byte strings of at most 16 bytes: uint64 (N,).

    Raises:
        ValueError: a string is longer than 16 bytes.
    """
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    out = np.empty(len(strings), dtype=np.uint64)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        data = np.frombuffer(b"".join(strings[int(i)] for i in rows), dtype=np.uint8).reshape(len(rows), int(length))
        out[rows] = fingerprint_rows(data)
    return out


def categorical_ids(values: pa.Array, column: int) -> np.ndarray:
    """AlgoPerf's ids of categorical `column` (Arrow strings (N,), empty and "-1" read as
    "00000000"): `to_hash_bucket_fast(value + str(column), VOCAB_SIZES[column])` rounded
    through float32, int32 (N,). Works on the Arrow buffers, grouped by string length."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if pa.types.is_large_string(values.type) else np.int32)
    offsets = offsets[values.offset:values.offset + len(values) + 1]
    chars = np.frombuffer(values.buffers()[2] or b"", dtype=np.uint8)
    suffix = str(column).encode()
    lengths = np.diff(offsets)
    out = np.empty(len(values), dtype=np.uint64)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        strings = chars[offsets[rows, None] + np.arange(length)]  # (M, length)
        keys = np.concatenate([strings, np.broadcast_to(np.frombuffer(suffix, dtype=np.uint8), (len(rows), len(suffix)))], axis=1)
        out[rows] = fingerprint_rows(keys)
        if length in (0, 2):  # AlgoPerf's decode_csv: an empty field or na_value "-1" takes the default
            missing = rows if length == 0 else rows[(strings == np.frombuffer(b"-1", dtype=np.uint8)).all(axis=1)]
            out[missing] = fingerprint64([_DEFAULT_CATEGORY + suffix])[0]
    buckets = out % np.uint64(VOCAB_SIZES[column])
    return buckets.astype(np.float32).astype(np.int32)  # AlgoPerf's float32 inputs round ids above 2**24


def parse_batch(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Raw Criteo fields (as `read_batches` yields them) -> `ARRAYS`: labels float32 (N,),
    dense float32 (N, 13) log-transformed, categorical int32 (N, 26) hashed."""
    numbers = np.stack([pc.fill_null(batch.column(i), 0.0).to_numpy() for i in range(1 + NUM_DENSE)], axis=1).astype(np.float32)
    dense = np.log(np.maximum(numbers[:, 1:], np.float32(0)) + np.float32(1))
    categorical = np.stack([categorical_ids(batch.column(1 + NUM_DENSE + i), i) for i in range(NUM_SPARSE)], axis=1)
    return {"dense": dense, "categorical": categorical, "labels": numbers[:, 0]}


def read_batches(path: Path, block_bytes: int = 1 << 26) -> Iterator[pa.RecordBatch]:
    """The TSV file's lines as Arrow record batches of about `block_bytes` of text each:
    label and integers as float64 (empty and "-1" null, as AlgoPerf's `na_value`),
    categorical fields as strings (never null).

    Raises:
        ValueError: a line has other than 40 fields or a number does not parse.
    """
    types = {name: pa.float64() for name in _FIELDS[:1 + NUM_DENSE]} | {name: pa.string() for name in _FIELDS[1 + NUM_DENSE:]}
    try:
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(column_names=_FIELDS, block_size=block_bytes),
                                 parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char=False, ignore_empty_lines=False),
                                 convert_options=pa_csv.ConvertOptions(column_types=types, null_values=["", "-1"], strings_can_be_null=False))
        yield from reader
    except pa.ArrowInvalid as e:
        raise ValueError(f"{path}: {e}") from None


def split_files(source_dir: Path) -> dict[str, list[Path]]:
    """AlgoPerf's files of each split in `source_dir`: train `day_0_*`..`day_22_*` (in day and
    file order), test `day_23_00`..`day_23_18`, validation `day_23_19`..`day_23_35`.

    Raises:
        ValueError: no training file, or a file of day 23 missing (names the first).
    """
    names = sorted((tuple(map(int, m.groups())), p) for p in source_dir.glob("day_*") if (m := RAW_FILE.fullmatch(p.name)))
    train = [p for (day, _), p in names if day < 23]
    day_23 = [source_dir / f"day_23_{i:02d}" for i in range(NUM_DAY_23_FILES)]
    if not train:
        raise ValueError(f"no training files day_<0..22>_<NN> in {source_dir}")
    if absent := [p for p in day_23 if not p.is_file()]:
        raise ValueError(f"{absent[0]} is missing (day 23 must have {NUM_DAY_23_FILES} files, 00 to {NUM_DAY_23_FILES - 1})")
    return {"train": train, "validation": day_23[NUM_TEST_FILES:], "test": day_23[:NUM_TEST_FILES]}


def count_lines(path: Path, block: int = 1 << 24) -> int:
    """Lines in a text file, a last line without a newline included."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(block):
            count, last = count + chunk.count(b"\n"), chunk[-1:]
    return count + (last != b"\n")


def _convert_file(path: Path, out: Path, start: int, lines: int, block_bytes: int) -> None:
    """Parse one raw file into rows [start, start + lines) of the arrays in `out` (*.npy.partial).

    Raises:
        ValueError: the file holds other than `lines` lines.
    """
    arrays = {name: np.load(out / f"{name}.npy.partial", mmap_mode="r+") for name in ARRAYS}
    filled = start
    for batch in read_batches(path, block_bytes):
        if filled + batch.num_rows > start + lines:
            raise ValueError(f"{path}: more lines than the {lines} counted")
        for name, values in parse_batch(batch).items():
            arrays[name][filled:filled + len(values)] = values
        filled += batch.num_rows
    if filled != start + lines:
        raise ValueError(f"{path}: read {filled - start} lines of the {lines} counted")
    for array in arrays.values():
        array.flush()


def _starmap(pool: multiprocessing.pool.Pool | None, function: Callable[..., T], tasks: list[tuple[object, ...]]) -> list[T]:
    return pool.starmap(function, tasks) if pool else [function(*task) for task in tasks]


def convert(source_dir: str | Path, dest_dir: str | Path, block_bytes: int = 1 << 26, jobs: int | None = None) -> dict[str, int]:
    """Convert AlgoPerf's raw Criteo 1TB files in `source_dir` into `dest_dir/<split>/`
    `{dense,categorical,labels}.npy` (see the module docstring), `jobs` files at a time (None:
    one per CPU core this process may use; `pacer data convert criteo1tb` runs it so), each
    parsing `block_bytes` of text at a time. Each array is written under a temporary name and
    renamed when complete, so an interrupted conversion leaves no layout that
    `check_converted` accepts.

    Returns:
        The number of examples of each split.

    Raises:
        ValueError: the source layout is incomplete or a line is malformed.
    """
    source_dir, dest_dir = Path(source_dir), Path(dest_dir)
    jobs = jobs or len(os.sched_getaffinity(0))
    sizes = {}
    with multiprocessing.get_context("spawn").Pool(jobs) if jobs > 1 else contextlib.nullcontext() as pool:
        for split, files in split_files(source_dir).items():
            lines = _starmap(pool, count_lines, [(p,) for p in files])
            starts = np.concatenate([[0], np.cumsum(lines)]).tolist()
            out = dest_dir / split
            out.mkdir(parents=True, exist_ok=True)
            for name, (dtype, shape) in ARRAYS.items():
                np.lib.format.open_memmap(out / f"{name}.npy.partial", mode="w+", dtype=dtype, shape=(starts[-1], *shape)).flush()
            _starmap(pool, _convert_file, [(p, out, start, n, block_bytes) for p, start, n in zip(files, starts[:-1], lines, strict=True)])
            for name in ARRAYS:
                (out / f"{name}.npy.partial").replace(out / f"{name}.npy")
            sizes[split] = starts[-1]
    return sizes


def check_converted(data_dir: Path) -> None:
    """Check the converted layout's files and shapes (headers only).

    Raises:
        ValueError: a file is missing or its shape or dtype does not fit the others.
    """
    for split in SPLITS:
        lengths = set()
        for name, (dtype, shape) in ARRAYS.items():
            path = data_dir / split / f"{name}.npy"
            if not path.is_file():
                raise ValueError(f"{path} is missing")
            array = np.load(path, mmap_mode="r")
            if array.dtype != dtype or array.shape[1:] != shape:
                raise ValueError(f"{path} holds {array.dtype} {array.shape}, not {np.dtype(dtype)} (N, {', '.join(map(str, shape))})")
            lengths.add(len(array))
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"{data_dir / split} holds arrays of lengths {sorted(lengths)}: not one non-zero length")


class CriteoArrays(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One converted split, memory-mapped: example i is `(inputs, target)`, float32 (39,)
    (13 log-transformed integers, then the 26 categorical ids as floats, as AlgoPerf's
    `inputs`) and float32 () (the click label). The arrays are opened in each process that
    reads (a DataLoader worker too), never pickled."""

    def __init__(self, split_dir: str | Path):
        self.split_dir = Path(split_dir)
        self.length = len(np.load(self.split_dir / "labels.npy", mmap_mode="r"))
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict[str, object]:
        return self.__dict__ | {"_arrays": None}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = self._read(np.array([index]))
        return inputs[0], labels[0]

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> ExampleRows:
        """Examples `indices` in one vectorised read of the maps (what the training stream's
        DataLoader calls for a batch; `Criteo1TB.augments_examples` is False)."""
        return ExampleRows(*self._read(np.asarray(indices, dtype=np.int64)))

    def _read(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (n, 39) inputs and float32 (n,) labels of `indices`."""
        if self._arrays is None:  # plain views of the maps: indexing an np.memmap is several times slower
            self._arrays = {name: np.load(self.split_dir / f"{name}.npy", mmap_mode="r").view(np.ndarray) for name in ARRAYS}
        if len(indices) and not (0 <= indices.min() and indices.max() < self.length):
            raise IndexError(f"example indices outside 0..{self.length - 1}")
        inputs = np.empty((len(indices), NUM_DENSE + NUM_SPARSE), dtype=np.float32)
        inputs[:, :NUM_DENSE], inputs[:, NUM_DENSE:] = self._arrays["dense"][indices], self._arrays["categorical"][indices]
        return torch.from_numpy(inputs), torch.from_numpy(self._arrays["labels"][indices].astype(np.float32))


class ExampleRows(Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """A batch read in one piece, still a sequence of `(inputs, target)` examples: `collate`
    hands its two tensors on as they are (cutting 262,144 rows into examples and stacking them
    again took 20x the read itself)."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.inputs[i], self.labels[i]


def collate(examples: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (B, 39) inputs and (B,) targets: an `ExampleRows` as it is, else stacked."""
    if isinstance(examples, ExampleRows):
        return examples.inputs, examples.labels
    return default_collate(list(examples))
